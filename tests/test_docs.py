"""The repository explains itself: README's Layout matches the tree, docs/ points nowhere outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: the protocol and architecture pages once lived outside the repository under these upper-case names
OUTSIDE_PAGES = re.compile(r"\b(?:EVALUATION|ARCHITECTURE)\.md\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _repository_files() -> list[Path]:
    """Tracked files plus new ones git does not ignore (what a clone or the next commit holds)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the test lists the repository's files with git)")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [ROOT / name for name in listed if name and (ROOT / name).is_file()]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def test_readme_layout_matches_the_tree():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "layout.py"), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_file_points_to_pages_outside_the_repository():
    hits = []
    for path in _repository_files():
        text = _text(path)
        for number, line in enumerate((text or "").splitlines(), 1):
            if OUTSIDE_PAGES.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not hits, ("these lines name pages that are not in the repository; point them to docs/evaluation.md or "
                      "docs/architecture.md:\n  " + "\n  ".join(hits))


@pytest.mark.parametrize("page", sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]), ids=lambda p: p.name)
def test_pages_link_only_inside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        resolved = (page.parent / target.split("#")[0]).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            bad.append(target)
    if page.parent.name == "docs":
        bad += [m.group(0) for m in re.finditer(r"\.\./shared\S*", text)]
    assert not bad, f"{page.relative_to(ROOT)} points outside the repository or to missing files: {bad}"


def test_evaluation_protocol_is_complete():
    text = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    for term in ("Task OOS", "Task OOD", "Task PERT", "pert-unseen", "represent", "noise-ceiling", "coverage90",
                 "edistance_ratio", "mmd_ratio", "discrimination", "mean-shift", "mean-perturbation", "control"):
        assert term in text, f"docs/evaluation.md does not describe {term!r}"


def test_artifact_page_describes_the_ensemble_folder():
    text = (ROOT / "docs" / "artifacts_and_hub.md").read_text(encoding="utf-8")
    assert "EnsemblePipeline" in text and "member-<i>/" in text, "docs/artifacts_and_hub.md must describe the ensemble folder"
