"""One rule, shared by the report modules, for "a method beats mean-shift on a held-out unit"."""

from __future__ import annotations


def beats(mine: dict, other: dict) -> tuple[bool, bool]:
    """``(pearson_delta higher, energy distance lower)`` of one unit's scores ``mine`` against ``other``.

    The energy distance is compared by its numerator E(P, S) = edistance_ratio x E(C, S): the shared
    denominator E(C, S) can be <= 0 where the perturbation has no measurable effect, which would
    reverse an order of ratios. A missing value never wins.
    """
    pd_mine, pd_other = mine.get("pearson_delta"), other.get("pearson_delta")
    ed_mine, ed_other = mine.get("edistance_ratio"), other.get("edistance_ratio")
    control = mine.get("edistance_control") or 1.0
    pd_win = pd_mine is not None and pd_other is not None and pd_mine > pd_other
    ed_win = ed_mine is not None and ed_other is not None and ed_mine * control < ed_other * control
    return pd_win, ed_win
