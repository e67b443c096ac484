"""One truth, one scorer: the report scores predictions exactly as the ensemble stage does.

Both read the truth with :func:`affectflow.scoring.read_truth` (a row counts when any target is
labelled) and score per target on the rows where that target is labelled and predicted. The
fixtures have rows labelled for some targets only, and predictions missing for some targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from affectflow.ensemble import build_ensemble_job
from affectflow.report.figures import write_score_figure
from affectflow.report.scores import ensemble_names
from affectflow.tasks import key_columns, task_spec


def _fold_dirs(tmp_path, truth: pd.DataFrame, test_keys: pd.DataFrame, spec, rng) -> dict[str, list]:
    """Runs ``a`` and ``b`` with 2 folds each (oof.csv, test.csv), noisy copies of the truth."""
    keys, targets = key_columns(spec), list(spec.targets)
    fold = np.arange(len(truth)) % 2
    members = {}
    for run, noise in (("a", 0.2), ("b", 0.4)):
        members[run] = []
        for k in range(2):
            part = truth[fold == k]
            oof = part[keys].copy()
            values = np.nan_to_num(part[targets].to_numpy(), nan=0.5) + rng.normal(0, noise, (len(part), len(targets)))
            oof[targets] = np.clip(values, 0, 1) if spec.binary else values
            oof.iloc[1, len(keys)] = np.nan  # a row this fold did not predict for its first target
            test = test_keys.copy()
            test[targets] = rng.uniform(0, 1, (len(test), len(targets)))
            d = tmp_path / run / f"fold{k}"
            d.mkdir(parents=True)
            oof.to_csv(d / "oof.csv", index=False)
            test.to_csv(d / "test.csv", index=False)
            members[run].append(d)
    return members


def _emi_truth(tmp_path, rng):
    spec = task_spec("emi")
    targets = list(spec.targets)
    ids = np.arange(100, 145)
    split = np.where(ids < 140, "train", "test")
    manifest = pd.DataFrame({"id": ids, "split": split, "subject": "", "media": [f"raw/{i}.mp4" for i in ids]})
    labels = rng.uniform(0, 1, (len(ids), len(targets)))
    labels[split == "test"] = np.nan
    labels[[0, 3, 7, 12, 20, 33], -1] = np.nan  # six clips without a Joy rating
    labels[[5, 9], 0] = np.nan                  # two without Admiration
    manifest[targets] = labels
    path = tmp_path / "manifest.tsv"
    manifest.to_csv(path, sep="\t", index=False, na_rep="")
    labelled = manifest[manifest["split"] != "test"][["id", *targets]].reset_index(drop=True)
    test = manifest[manifest["split"] == "test"][["id"]].reset_index(drop=True)
    return spec, path, labelled, test


def _au_truth(tmp_path, rng):
    spec = task_spec("au")
    targets = list(spec.targets)
    n = 300
    frames = pd.DataFrame({"id": np.repeat([1, 2], n // 2), "frame": np.tile(np.arange(1, n // 2 + 1), 2)})
    labels = (rng.random((n, len(targets))) < 0.4).astype(float)
    labels[rng.random((n, len(targets))) < 0.1] = np.nan  # some AUs not annotated on some frames
    frames[targets] = labels
    path = tmp_path / "frame_labels.csv.gz"
    frames.to_csv(path, index=False)
    test = pd.DataFrame({"id": 3, "frame": np.arange(1, 11)})
    return spec, path, frames, test


@pytest.mark.parametrize("make_truth", [_emi_truth, _au_truth], ids=["emi-manifest", "au-frame-labels"])
def test_report_and_ensemble_give_the_same_score_with_partly_labelled_rows(tmp_path, make_truth):
    rng = np.random.default_rng(11)
    spec, truth_path, truth, test_keys = make_truth(tmp_path, rng)
    targets = list(spec.targets)
    members = _fold_dirs(tmp_path, truth, test_keys, spec, rng)
    ensemble = build_ensemble_job({k: [str(d) for d in v] for k, v in members.items()}, truth_path,
                                  tmp_path / "ensemble" / "late_mean", task=spec.name, method="mean")
    table = write_score_figure({run: [d / "oof.csv" for d in dirs] for run, dirs in members.items()},
                               {"late_mean": tmp_path / "ensemble" / "late_mean" / "oof.csv"}, truth_path,
                               task=spec.name, svg=tmp_path / "scores.svg", tsv=tmp_path / "scores.tsv")
    pooled = table[table["aggregate"] == "pooled"].set_index("source")
    # The ensemble's own OOF score, and its score of each member, against the report's pooled rows.
    expected = {"late_mean": ensemble["oof"], **ensemble["members"]}
    assert set(pooled.index) == set(expected)
    for source, score in expected.items():
        row = pooled.loc[source]
        for target in targets:
            assert np.isfinite(score["per_target"][target]), (source, target)
            # oof.csv holds 6 decimals, the ensemble scored its arrays before writing them
            assert row[target] == pytest.approx(score["per_target"][target], abs=1e-5), (source, target)
        assert row["mean"] == pytest.approx(score["mean"], abs=1e-5), source
        assert row["n"] == score["rows"], source
    # Partly labelled rows were scored (for the targets they have), not dropped.
    fully_labelled = int(truth[targets].notna().all(axis=1).sum())
    assert pooled.loc["late_mean", "n"] > fully_labelled


def test_ensembles_listed_by_path_are_named_by_their_directory():
    paths = ["results/demo/ensemble/late_mean/oof.csv", "results/demo/ensemble/compare-best/oof.csv"]
    assert ensemble_names(paths) == {"late_mean": paths[0], "compare-best": paths[1]}
    assert ensemble_names({"mine": paths[0]}) == {"mine": paths[0]}
