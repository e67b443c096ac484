"""Tests of shard and fold assignment."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import affectflow
from affectflow.data.folds import assign_folds
from affectflow.data.shards import assign_shards, shard_of


def manifest(n_train=40, n_test=5, subjects=None):
    ids = list(range(1, n_train + n_test + 1))
    split = ["train" if i <= n_train * 3 // 4 else "val" for i in ids[:n_train]] + ["test"] * n_test
    subject = list(subjects) if subjects is not None else [""] * len(ids)
    return pd.DataFrame(
        {"id": ids, "split": split, "subject": subject, "media": [f"/m/{i}" for i in ids]}
    )


def test_shard_of_is_sha1_based_and_in_range():
    for clip_id in (0, 1, 12, 99999):
        digest = hashlib.sha1(str(clip_id).encode()).digest()
        assert shard_of(clip_id, 7) == int.from_bytes(digest[:8], "big") % 7
        assert 0 <= shard_of(clip_id, 7) < 7
    assert shard_of(np.int64(12), 5) == shard_of(12, 5)
    assert shard_of(123, 1) == 0


def test_shard_of_is_stable_across_processes():
    # A fresh interpreter has a different str-hash salt; the shard must not change.
    code = "from affectflow.data.shards import shard_of; print([shard_of(i, 13) for i in range(50)])"
    src = str(Path(affectflow.__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": src, "PYTHONHASHSEED": "random"},
    )
    assert out.stdout.strip() == str([shard_of(i, 13) for i in range(50)])


def test_shards_spread_over_all_values():
    counts = np.bincount([shard_of(i, 4) for i in range(4000)], minlength=4)
    assert counts.min() > 800  # roughly uniform: each of 4 shards gets ~1000


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_bad_n_shards(bad):
    with pytest.raises(ValueError, match="n_shards"):
        shard_of(1, bad)
    with pytest.raises(ValueError, match="n_shards"):
        assign_shards(manifest(), bad)


def test_assign_shards_adds_column_without_mutating():
    m = manifest()
    out = assign_shards(m, 3)
    assert "shard" not in m.columns
    assert out["shard"].tolist() == [shard_of(i, 3) for i in m["id"]]
    assert out["shard"].dtype.kind == "i"


def test_folds_test_rows_and_balance():
    m = manifest(n_train=40, n_test=5)
    out = assign_folds(m, 4, seed=0)
    assert (out.loc[out["split"] == "test", "fold"] == -1).all()
    labelled = out[out["split"] != "test"]
    assert sorted(labelled["fold"].value_counts().tolist()) == [10, 10, 10, 10]
    assert "fold" not in m.columns


def test_folds_keep_subjects_together_and_balance_groups():
    # 10 subjects with 1..10 clips each (55 clips), plus 5 subject-less clips.
    subjects = [f"s{s}" for s in range(1, 11) for _ in range(s)] + [""] * 5
    m = manifest(n_train=60, n_test=3, subjects=subjects + ["", "", ""])
    out = assign_folds(m, 3, seed=7)
    labelled = out[out["split"] != "test"]
    named = labelled[labelled["subject"] != ""]
    assert (named.groupby("subject")["fold"].nunique() == 1).all()
    sizes = labelled["fold"].value_counts()
    assert set(sizes.index) == {0, 1, 2}
    assert sizes.max() - sizes.min() <= 1  # 60 clips -> 20 each is reachable


def test_subjectless_clips_are_separate_groups():
    m = manifest(n_train=6, n_test=0)
    out = assign_folds(m, 6, seed=1)
    assert sorted(out["fold"].tolist()) == [0, 1, 2, 3, 4, 5]


def test_folds_deterministic_per_seed_and_row_order():
    m = manifest(n_train=40, n_test=2)
    a = assign_folds(m, 5, seed=3)
    b = assign_folds(m.sample(frac=1, random_state=0), 5, seed=3).sort_values("id")
    assert a["fold"].tolist() == b["fold"].tolist()
    others = [assign_folds(m, 5, seed=s)["fold"].tolist() for s in range(4, 9)]
    assert any(o != a["fold"].tolist() for o in others)


def test_k_larger_than_groups_names_both_numbers():
    subjects = ["a"] * 5 + ["b"] * 5 + [""] * 2  # 2 subjects + 1 subject-less train clip, 1 test
    m = manifest(n_train=11, n_test=1, subjects=subjects)
    with pytest.raises(ValueError, match=r"k=4.*only 3 group"):
        assign_folds(m, 4, seed=0)


@pytest.mark.parametrize("k", [1, 0, 2.5])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        assign_folds(manifest(), k, seed=0)


def test_unknown_split_rejected():
    m = manifest()
    m.loc[0, "split"] = "dev"
    with pytest.raises(ValueError, match=r"\['dev'\]"):
        assign_folds(m, 2, seed=0)


# -- the papers' fold schemes ------------------------------------------------------------------

from affectflow.data.folds import FOLD_SCHEMES, TRAIN_ONLY, make_folds, n_folds  # noqa: E402


def scheme_manifest():
    # 30 train clips of 10 subjects, 12 val clips of 6 subjects, 4 test clips
    subjects = [f"t{i % 10}" for i in range(30)] + [f"v{i % 6}" for i in range(12)] + [""] * 4
    split = ["train"] * 30 + ["val"] * 12 + ["test"] * 4
    ids = list(range(1, 47))
    return pd.DataFrame({"id": ids, "split": split, "subject": subjects, "media": [f"/m/{i}" for i in ids]})


def test_official_and_mix_schemes():
    m = scheme_manifest()
    official = make_folds(m, "official", k=2, seed=0)
    assert (official.loc[m["split"] == "val", "fold"] == 0).all()
    assert (official.loc[m["split"] == "train", "fold"] == TRAIN_ONLY).all()
    assert (official.loc[m["split"] == "test", "fold"] == -1).all()
    mix = make_folds(m, "mix", k=2, seed=0)
    assert (mix.loc[m["split"] != "test", "fold"] == TRAIN_ONLY).all()
    assert n_folds("official", 3) == n_folds("mix", 3) == 1


@pytest.mark.parametrize("scheme,count", [("train5_val", 6), ("train5_val2", 7), ("trainval5", 5), ("grouped", 3)])
def test_paper_schemes_fold_counts_and_groups(scheme, count):
    m = scheme_manifest()
    out = make_folds(m, scheme, k=3, seed=2)
    assert n_folds(scheme, 3) == count
    labelled = out[out["split"] != "test"]
    assert sorted(labelled["fold"].unique()) == list(range(count))
    assert (labelled.groupby("subject")["fold"].nunique() == 1).all()  # a subject never straddles folds
    if scheme.startswith("train5"):
        assert set(labelled.loc[labelled["split"] == "train", "fold"]) == set(range(5))
        assert set(labelled.loc[labelled["split"] == "val", "fold"]) == set(range(5, count))
    assert (out.loc[out["split"] == "test", "fold"] == -1).all()


def test_unknown_scheme_lists_the_known():
    with pytest.raises(ValueError, match="known: " + ", ".join(FOLD_SCHEMES)):
        make_folds(scheme_manifest(), "loso", k=2, seed=0)


def affwild2_listing(root) -> pd.DataFrame:
    """An Aff-Wild2 VA manifest read by the real reader (without opening videos) from a layout of 30
    training and 12 validation videos, every third with two annotated people (``_left``/``_right``)."""
    from affectflow.data.affwild2 import read_affwild2_manifest

    (root / "videos").mkdir(parents=True)
    test_list = root / "test_list.txt"
    test_list.write_text("t1\nt2\n")
    for split, folder, n in (("train", "Train_Set", 30), ("val", "Validation_Set", 12)):
        directory = root / "Annotations" / "VA_Estimation_Challenge" / folder
        directory.mkdir(parents=True)
        for v in range(n):
            names = [f"{split}{v}_left", f"{split}{v}_right"] if v % 3 == 0 else [f"{split}{v}"]
            for name in names:
                (directory / f"{name}.txt").write_text("valence,arousal\n0.1,0.2\n")
    return read_affwild2_manifest(root, "va", test_list=test_list, probe=False)


@pytest.mark.parametrize("scheme", sorted(FOLD_SCHEMES))
def test_no_scheme_splits_an_affwild2_video_or_a_subject(scheme, tmp_path):
    from affectflow.data.folds import group_keys
    from affectflow.training.fold import _holdout

    m = affwild2_listing(tmp_path / "aw")
    people = m[m["name"].str.endswith(("_left", "_right"))]
    assert len(people) == 2 * (10 + 4)  # the reader gives both people of a video its name as subject
    out = make_folds(m, scheme, k=4, seed=5)
    labelled = out[out["split"] != "test"]
    assert (labelled.groupby("subject")["fold"].nunique() == 1).all()
    for video in ("train0", "train3", "val0"):
        assert labelled.loc[labelled["subject"] == video, "fold"].nunique() == 1
    # the inner validation set a monitor holds out of a fold's training part keeps videos whole too
    groups = dict(zip(labelled["id"], group_keys(labelled)))
    fit = [int(i) for i in labelled.loc[labelled["fold"] != 0, "id"]]
    for seed in range(10):
        train, val = _holdout(fit, 0.2, seed, groups)
        assert {groups[i] for i in val}.isdisjoint({groups[i] for i in train})
        assert val and sorted(train + val) == sorted(fit)
