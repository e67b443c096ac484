"""The fold of a run whose out-of-fold score is highest (Yu et al. 2023, 001: "We freeze the
unimodal's model parameters with the highest ρ"). Torch-free: it reads ``metrics.json`` files."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["best_fold", "fold_of"]


def fold_of(fold_dir: str | os.PathLike) -> int:
    """The fold number of a ``.../fold<k>`` directory."""
    name = Path(fold_dir).name
    if not name.startswith("fold") or not name[4:].isdigit():
        raise ValueError(f"{fold_dir}: not a fold directory (fold<k>)")
    return int(name[4:])


def best_fold(run_dir: str | os.PathLike, folds: Iterable[int] | None = None) -> int:
    """The fold of run directory ``run_dir`` (among ``folds``, default all ``fold*`` directories)
    whose ``metrics.json`` has the highest ``oof_score.mean`` (the lowest such fold on a tie).

    Fails naming the directory when no fold has a score (fold scheme ``mix`` leaves no clip out)."""
    run_dir = Path(run_dir)
    dirs = sorted(run_dir.glob("fold*")) if folds is None else [run_dir / f"fold{k}" for k in folds]
    scores = {}
    for fold_dir in dirs:
        path = fold_dir / "metrics.json"
        if not path.is_file():
            continue
        value = json.loads(path.read_text()).get("oof_score", {}).get("mean")
        if value is not None and math.isfinite(value):
            scores[fold_of(fold_dir)] = float(value)
    if not scores:
        raise ValueError(f"{run_dir}: no fold has an out-of-fold score (fold_scheme mix leaves no clip out); "
                         "name the fold instead")
    return max(sorted(scores), key=lambda k: scores[k])
