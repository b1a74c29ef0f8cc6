"""Print the README's Layout section from the tree: each area of ``virtualcell/`` with its docstring's summary.

    python scripts/layout.py            # print the block
    python scripts/layout.py --write    # replace the block under README.md's "## Layout"
    python scripts/layout.py --check    # exit 1 (with a diff) when README.md's block differs

An area's summary is the first paragraph of its module docstring (``__init__.py`` for a package), so
the place to change what README says about an area is that docstring. Under each package, its
modules and subpackages are listed, so a newcomer can find each concept's home (deprecated re-export
modules, which only point to a new path, are left out). tests/test_docs.py checks that README.md agrees.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "virtualcell"
README = ROOT / "README.md"
HEADING = "## Layout"
WIDTH = 110
NAME_WIDTH = 19
#: lowest floor first (docs/architecture.md); areas not named here follow in alphabetical order
ORDER = ("config", "execution", "io", "nn", "registry", "component", "data", "train", "metrics", "store",
         "instruments", "representations", "pipelines", "selection", "evaluate", "testing", "datasets", "demo",
         "cli", "__main__")
OUTSIDE = (
    ("docs/", "the project's own pages: evaluation protocol (evaluation.md), architecture and floors "
              "(architecture.md), selection, store, CLI, artifacts and the hub"),
    ("tests/", "mirrors virtualcell/; every registered component runs its contract tests; "
               "test_package_structure.py holds the floors"),
    ("benchmarks/", "benchmark scripts and RESULTS.md (every number with the command that printed it)"),
    ("examples/", "runnable scripts"),
    ("scripts/", "setup.sh, test.sh (the test command), demo.sh (the main job), layout.py (this section)"),
)


def summary(path: Path) -> str:
    """The first paragraph of ``path``'s module docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    if not doc:
        raise SystemExit(f"error: {path.relative_to(ROOT)} has no module docstring; README's Layout is made from it. "
                         "Add one whose first paragraph says what the area holds.")
    return " ".join(doc.split("\n\n")[0].split())


def is_reexport(path: Path) -> bool:
    """A thin deprecated module that only re-exports a moved path."""
    text = path.read_text(encoding="utf-8")
    return "DeprecationWarning" in text and len(text.splitlines()) <= 40


def contents(package: Path) -> list[str]:
    """The modules (``name``) and subpackages (``name/``) of ``package``, re-exports left out."""
    names = []
    for child in sorted(package.iterdir()):
        if child.is_dir() and (child / "__init__.py").exists():
            names.append(child.name + "/")
        elif child.suffix == ".py" and child.name != "__init__.py" and not is_reexport(child):
            names.append(child.stem)
    return names


def entry(name: str, text: str, more: list[str] = ()) -> list[str]:
    indent = " " * (2 + NAME_WIDTH)
    lines = textwrap.wrap(text, WIDTH, initial_indent=f"  {name:<{NAME_WIDTH - 1}} ", subsequent_indent=indent)
    if more:
        lines += textwrap.wrap(" ".join(more), WIDTH, initial_indent=indent + "· ", subsequent_indent=indent + "  ")
    return lines


def areas() -> list[Path]:
    found = [p for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").exists())]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.name.removesuffix(".py"), len(ORDER)), p.name))


def layout() -> str:
    lines = [line[2:] for line in entry("virtualcell/", summary(PACKAGE / "__init__.py"))]
    for path in areas():
        if path.is_dir():
            lines += entry(path.name + "/", summary(path / "__init__.py"), contents(path))
        else:
            lines += entry(path.name, summary(path))
    for name, text in OUTSIDE:
        lines += [line[2:] for line in entry(name, text)]
    return "\n".join(lines) + "\n"


def readme_block(text: str) -> tuple[int, int]:
    """Character span of the code block under README's Layout heading (its content only)."""
    start = text.find(f"\n{HEADING}\n")
    if start < 0:
        raise SystemExit(f"error: README.md has no '{HEADING}' section.")
    fence = text.find("```\n", start)
    end = text.find("```", fence + 4)
    if fence < 0 or end < 0:
        raise SystemExit(f"error: README.md's '{HEADING}' section has no ``` code block.")
    return fence + 4, end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="replace README.md's Layout block")
    group.add_argument("--check", action="store_true", help="exit 1 when README.md's Layout block differs")
    args = parser.parse_args(argv)
    block = layout()
    if not (args.write or args.check):
        sys.stdout.write(block)
        return 0
    text = README.read_text(encoding="utf-8")
    start, end = readme_block(text)
    if args.write:
        tmp = README.with_name(f".{README.name}.tmp-{os.getpid()}")
        tmp.write_text(text[:start] + block + text[end:], encoding="utf-8")
        os.replace(tmp, README)  # atomic: README is never half-written
        return 0
    if text[start:end] != block:
        sys.stdout.writelines(difflib.unified_diff(text[start:end].splitlines(True), block.splitlines(True),
                                                   "README.md (Layout)", "python scripts/layout.py"))
        print("README.md's Layout differs from the tree: run `python scripts/layout.py --write`.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
