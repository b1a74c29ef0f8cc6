"""Write benchmarks/RESULTS.md from the runs' JSON: every ``benchmarks/report_*.py`` module's ``render()``.

    python benchmarks/make_results.py            # writes benchmarks/RESULTS.md
    python benchmarks/make_results.py --check    # exit 1 if RESULTS.md differs from what the JSON gives

Each ``report_<topic>.py`` builds its section from ``benchmarks/results/<topic>/*.json`` only, every
table headed by the command that produced it; this script only concatenates them, in the fixed
order of :data:`ORDER` (topics not listed follow alphabetically), under a header that says the file
is generated. No number is typed here. A section whose ``render()`` fails is written as a note
naming the error (and the script exits 1), so one broken report does not hide the others.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
#: sections in this order; any other report_<topic>.py follows alphabetically
ORDER = ("overview", "harness", "selection", "fidelity", "coverage", "represent", "spatial", "pert_unseen", "store",
         "scale")

HEADER = """# virtualcell benchmark results

**Generated file: do not edit.** `python benchmarks/make_results.py` writes it by concatenating the
`render()` of every `benchmarks/report_<topic>.py`, each of which builds its section from the runs'
JSON in `benchmarks/results/<topic>/` only, every table headed by the exact command that produced
it. To change a number, rerun that command (most sections name a `benchmarks/run_*.sh` stage) and
regenerate; to change the text, edit the report module. Metrics are docs/evaluation.md version 2
(Euclidean energy distance and MMD in a PCA fitted outside the held-out context, `std_ratio_top100`,
the noise ceiling, `coverage90`, PERT `discrimination`).

History: the results of issues #3-#5 (scGen reproduced with a VAE, the CellGen-style CGAN, the
diffusion manipulator) were written by hand under metrics version 1, whose `edistance_ratio` compared
means only and whose PCA was fitted on the held-out cells; they are superseded by the sections below
and remain in the repository's history.
"""


def report_modules(folder: Path | None = None) -> list[Path]:
    """``report_*.py`` files of ``folder`` (default: this one) in :data:`ORDER`, then the rest alphabetically."""
    folder = HERE if folder is None else folder
    found = {p.stem.removeprefix("report_"): p for p in folder.glob("report_*.py")}
    ordered = [found.pop(topic) for topic in ORDER if topic in found]
    return ordered + [found[topic] for topic in sorted(found)]


def render_section(path: Path) -> tuple[str, bool]:
    """``(markdown, ok)`` of one report module's ``render()``; a failure becomes a note naming the error."""
    spec = importlib.util.spec_from_file_location(f"_vc_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        text = module.render()
        if not isinstance(text, str):
            raise TypeError(f"render() returned {type(text).__name__}, not str")
        return text.strip() + "\n", True
    except Exception as error:  # noqa: BLE001 (one broken report must not hide the others)
        last = traceback.extract_tb(error.__traceback__)[-1]
        return (f"## {path.stem}\n\n> `{path.name}` could not be rendered: {type(error).__name__}: {error} "
                f"({Path(last.filename).name}:{last.lineno}). Fix it and rerun `python benchmarks/make_results.py`.\n"), False


def build(folder: Path | None = None) -> tuple[str, list[str]]:
    """The whole RESULTS.md text and the names of the reports that failed."""
    sections, failed = [HEADER.strip() + "\n"], []
    modules = report_modules(folder)
    if modules:
        sections.append("Sections: " + ", ".join(f"`{p.stem}`" for p in modules) + ".\n")
    for path in modules:
        text, ok = render_section(path)
        sections.append(text)
        if not ok:
            failed.append(path.name)
    return "\n".join(sections), failed


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"      # created by open: 0o666 minus the umask
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write (default benchmarks/RESULTS.md)")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))                      # report modules may share helpers in benchmarks/
    text, failed = build()
    for name in failed:
        print(f"warning: {name} failed to render (see its note in the output)", file=sys.stderr)
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'differs from the JSON; run python benchmarks/make_results.py'}")
        return 0 if same and not failed else 1
    _atomic_write(args.out, text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines, {len(report_modules())} sections)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
