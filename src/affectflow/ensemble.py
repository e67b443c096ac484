"""Late fusion of runs: average each run's K fold models on test, then average the runs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.atomic import atomic_path, write_text_atomic
from affectflow.metrics import pearson_per_target


def run_predictions(fold_dirs: Sequence[str | os.PathLike], targets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run's out-of-fold predictions (all folds stacked) and test predictions (fold mean)."""
    oof = pd.concat([pd.read_csv(Path(d) / "oof.csv") for d in fold_dirs], ignore_index=True)
    tests = pd.concat([pd.read_csv(Path(d) / "test.csv") for d in fold_dirs], ignore_index=True)
    test = tests.groupby("id", sort=True)[targets].mean().reset_index()
    return oof.sort_values("id").reset_index(drop=True), test


def _average(frames: list[pd.DataFrame], targets: list[str]) -> pd.DataFrame:
    # A run without a prediction for a clip (no face, no audio) leaves NaN there; the mean
    # over the runs that do predict it keeps the clip covered by whatever modality exists.
    stacked = pd.concat(frames, ignore_index=True)
    return stacked.groupby("id", sort=True)[targets].mean().reset_index()


def late_mean(
    members: Mapping[str, Sequence[str | os.PathLike]],
    manifest: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    targets: list[str],
) -> dict:
    """Average the predictions of ``members`` (run name -> fold dirs); write oof, test, members, score.

    Returns the score dict: OOF mean Pearson of the fusion and of each member.
    """
    out_dir = Path(out_dir)
    oofs, tests, member_scores = [], [], {}
    labels = manifest.set_index("id")
    for name, fold_dirs in members.items():
        oof, test = run_predictions(fold_dirs, targets)
        oofs.append(oof)
        tests.append(test)
        member_scores[name] = _score(oof, labels, targets)
    oof, test = _average(oofs, targets), _average(tests, targets)
    score = {"method": "mean", "oof": _score(oof, labels, targets), "members": member_scores}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("oof.csv", oof), ("test.csv", test)):
        with atomic_path(out_dir / name) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
    weights = {name: 1 / len(members) for name in members}
    write_text_atomic(out_dir / "members.json", json.dumps({"method": "mean", "weights": weights}, indent=2))
    write_text_atomic(out_dir / "score.json", json.dumps(score, indent=2))
    return score


def _score(pred: pd.DataFrame, labels: pd.DataFrame, targets: list[str]) -> dict:
    scored = pred.dropna()
    if len(scored) < 3:
        return {"clips": len(scored), "mean_pearson": float("nan")}
    per_target = pearson_per_target(labels.loc[scored["id"], targets].to_numpy(), scored[targets].to_numpy(), targets)
    return {"clips": len(scored), "mean_pearson": float(np.mean(list(per_target.values()))), "per_target": per_target}
