"""``fit --plot``: draw the training history a trained component saves with its artifact (``history.json``).

The plotting itself is :func:`virtualcell.train.plot.plot_history`; this module picks the component of a
saved pipeline folder whose history to draw (the first trained one, in role order).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HISTORY_FILE", "check_plot_path", "plot_pipeline_history"]

HISTORY_FILE = "history.json"
_ROLES = ("encoder", "manipulator", "decoder")


def check_plot_path(plot: Path, option: str = "--plot") -> None:
    """The history is drawn as a PNG: refuse another suffix before anything is fitted."""
    if Path(plot).suffix.lower() != ".png":
        raise ValueError(f"{option} {plot}: the training history is drawn as a PNG; give a path ending in .png.")


def plot_pipeline_history(pipeline: Path, out: Path) -> str:
    """Plot the history of the first trained component of the saved ``pipeline`` folder into ``out``
    (atomically); returns the line to print (a ``warning:`` line when no component saved a history)."""
    from ..train.plot import plot_history

    pipeline = Path(pipeline)
    found = sorted(pipeline.glob(f"*/{HISTORY_FILE}"),
                   key=lambda p: (_ROLES.index(p.parent.name) if p.parent.name in _ROLES else len(_ROLES), p))
    if not found:
        return (f"warning: no component of {pipeline} saved a training history ({HISTORY_FILE}), so --plot drew "
                "nothing.")
    first = found[0].parent
    plot_history(first, out, title=f"{first.name} ({pipeline.name}): training history")
    others = ", ".join(str(p) for p in found[1:])
    return f"plotted the training history of the {first.name} to {out}" + (f" (also saved: {others})" if others else "")
