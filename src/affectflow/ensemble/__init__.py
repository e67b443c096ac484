"""Ensembles fitted on out-of-fold predictions.

- :mod:`~affectflow.ensemble.methods`: the registered ensemblers (:data:`ENSEMBLERS`), the NaN-aware
  combination and AU thresholds (numpy and scipy only: importable without torch);
- :mod:`~affectflow.ensemble.tables`: reading a run's fold predictions, aligning runs, writing;
- :mod:`~affectflow.ensemble.build`: fitting, scoring and writing an ensemble;
- :mod:`~affectflow.ensemble.apply`: applying a fitted ensemble (``members.json``) to its members'
  predictions of the test split or of any predicted video set.
"""

from affectflow.ensemble.apply import apply_ensemble, apply_ensemble_job
from affectflow.ensemble.build import build_ensemble, build_ensemble_job
from affectflow.ensemble.errors import EnsembleError
from affectflow.ensemble.methods import ENSEMBLERS, THRESHOLD_GRID, combine, tune_thresholds
from affectflow.ensemble.tables import run_predictions

__all__ = [
    "ENSEMBLERS",
    "apply_ensemble",
    "apply_ensemble_job",
    "THRESHOLD_GRID",
    "EnsembleError",
    "build_ensemble",
    "build_ensemble_job",
    "combine",
    "run_predictions",
    "tune_thresholds",
]
