"""Choosing a pipeline on the user's own data by inner cross-validation (``virtualcell.select``, ``virtualcell select``).

- :func:`select` / :func:`select_pipeline` (:mod:`.choose`): the protocol of docs/selection.md;
- :mod:`.candidates`: candidate specs (``"pca+latent-arithmetic"``); :mod:`.folds`: the inner folds;
- :mod:`.cv`: the inner CV through the one held-out loop; :mod:`.ranking`: the selection score and rule;
- :mod:`.stacking`: the ensemble's weights and base member; :mod:`.spread`: spread calibration;
- :mod:`.entries`: scoring the combined entries and fitting any entry of a finished selection;
- :mod:`.auto`: the benchmark's ``--manipulator auto``;
- :mod:`.conformal`: split-conformal intervals of the predicted mean from the inner folds (docs/uncertainty.md).

Above :mod:`virtualcell.pipelines` (the fitted winner is a pipeline), below :mod:`virtualcell.evaluate`.
"""

from __future__ import annotations

from .candidates import DEFAULT_CANDIDATES, Candidate, is_auto, parse_candidate, parse_candidates
from .ranking import ENSEMBLE, SELECTION_METRICS, rank_entries
from .choose import Selection, load_selected, select, select_pipeline
from .conformal import calibrate_pipeline

__all__ = ["select", "select_pipeline", "Selection", "load_selected", "SELECTION_METRICS", "ENSEMBLE", "rank_entries",
           "Candidate", "DEFAULT_CANDIDATES", "is_auto", "parse_candidate", "parse_candidates", "calibrate_pipeline"]
