"""Cross-validation folds over the labelled (train + val) clips of a manifest.

Clips of the same subject always share a fold, so that a model is never validated on
a person it was trained on.  Clips whose subject is unknown (empty) are each their own
group — the best that can be done without identity labels.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = ["FOLD_SCHEMES", "LABELLED_SPLITS", "TEST_FOLD", "TRAIN_ONLY", "assign_folds", "group_keys", "make_folds",
           "n_folds"]

TEST_FOLD = -1  # fold value of test clips, which take part in no fold
TRAIN_ONLY = -2  # fold value of labelled clips that every fold trains on and none validates on
LABELLED_SPLITS = ("train", "val")  # splits whose clips carry labels and take part in folds


def group_keys(manifest: pd.DataFrame) -> list[tuple[str, str]]:
    """The group of each row of ``manifest``: ``("subject", s)`` for a non-empty ``subject`` (an
    Aff-Wild2 track's is its video, shared by ``_left`` and ``_right``), else ``("clip", id)``, a
    group of its own. The tag keeps a subject named "12" apart from clip id 12. No fold and no
    held-out validation set ever splits a group."""
    subjects = manifest["subject"].fillna("").astype(str).str.strip()
    return [("subject", s) if s else ("clip", str(i)) for s, i in zip(subjects, manifest["id"])]


def assign_folds(manifest: pd.DataFrame, k: int, *, seed: int) -> pd.DataFrame:
    """Return a copy of ``manifest`` with an int ``fold`` column.

    Test rows get ``-1``.  Train and val rows are grouped by ``subject`` (an empty or
    missing subject makes the clip its own group) and the groups are dealt into ``k``
    folds: shuffled with ``seed``, then placed largest first into the fold with the
    fewest clips so far (ties: lowest fold index), which keeps the fold sizes as
    balanced as whole groups allow.  The result depends only on the manifest and
    ``seed``, not on the row order.

    Raises ValueError if ``k < 2``, if a split value is not train/val/test, or if ``k``
    exceeds the number of groups (a fold would be empty).
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    for col in ("id", "split", "subject"):
        if col not in manifest.columns:
            raise ValueError(f"manifest has no {col!r} column (columns: {list(manifest.columns)})")
    bad = sorted(set(manifest["split"]) - {*LABELLED_SPLITS, "test"}, key=str)
    if bad:
        raise ValueError(f"unknown split value(s) {bad}; expected one of train, val, test")

    out = manifest.copy()
    # Work on row positions, not index labels, so a duplicated index cannot misplace rows.
    fold = np.full(len(out), TEST_FOLD, dtype=np.int64)
    positions = np.flatnonzero(out["split"].isin(LABELLED_SPLITS).to_numpy())

    members: dict[tuple[str, str], list[int]] = {}
    for pos, key in zip(positions, group_keys(out.iloc[positions])):
        members.setdefault(key, []).append(int(pos))

    if k > len(members):
        raise ValueError(
            f"k={k} folds requested but the train+val rows form only {len(members)} "
            f"group(s) (subjects, or single clips without a subject)"
        )

    # Sort first so the shuffle does not depend on the manifest's row order.
    groups = sorted(members)
    rng = np.random.default_rng(int(seed))
    groups = [groups[i] for i in rng.permutation(len(groups))]
    # Stable sort: equally sized groups keep their shuffled order.
    groups.sort(key=lambda g: len(members[g]), reverse=True)

    sizes = [0] * k
    for g in groups:
        target = min(range(k), key=lambda f: (sizes[f], f))
        sizes[target] += len(members[g])
        fold[members[g]] = target
    out["fold"] = fold
    return out


# scheme -> number of folds (None: k from the config)
FOLD_SCHEMES = {
    "grouped": None,  # k folds over train+val, grouped by subject
    "official": 1,  # fold 0 = the official val split, trained on the official train split
    "trainval5": 5,  # Yu et al. 2023 (001): 5 folds over train+val
    "train5_val": 6,  # Liu et al. 2023 (003): train in 5 folds + val as fold 5
    "train5_val2": 7,  # Deng et al. 2023 (004): train in 5 folds + val in 2 (folds 5, 6)
    "mix": 1,  # train on all of train+val; fold 0 has no out-of-fold clips
}


def n_folds(scheme: str, k: int) -> int:
    """How many fold runs ``scheme`` makes (``k`` for ``grouped``)."""
    if scheme not in FOLD_SCHEMES:
        raise ValueError(f"unknown fold scheme {scheme!r}; known: {', '.join(FOLD_SCHEMES)}")
    return FOLD_SCHEMES[scheme] or k


def _grouped(manifest: pd.DataFrame, rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Grouped folds 0..k-1 for the rows ``rows`` (a boolean mask) only."""
    part = manifest.loc[rows, ["id", "split", "subject"]].copy()
    part["split"] = "train"
    return assign_folds(part, k, seed=seed)["fold"].to_numpy()


def make_folds(manifest: pd.DataFrame, scheme: str, *, k: int, seed: int) -> pd.DataFrame:
    """Return a copy of ``manifest`` with the ``fold`` column of a paper's scheme.

    Test rows get ``TEST_FOLD`` (-1); labelled rows that every fold trains on get ``TRAIN_ONLY``
    (-2). Groups (subjects) never straddle folds. See ``FOLD_SCHEMES`` for the schemes; ``k`` (the
    config's ``train.k_folds``) is the fold count of ``grouped``, ``seed`` shuffles the groups.
    """
    count = n_folds(scheme, k)
    for col in ("id", "split", "subject"):
        if col not in manifest.columns:
            raise ValueError(f"manifest has no {col!r} column (columns: {list(manifest.columns)})")
    out = manifest.copy()
    split = out["split"].to_numpy()
    is_train, is_val = split == "train", split == "val"
    fold = np.full(len(out), TEST_FOLD, dtype=np.int64)
    if scheme in ("grouped", "trainval5"):
        return assign_folds(manifest, count, seed=seed)
    if scheme == "official":
        fold[is_train], fold[is_val] = TRAIN_ONLY, 0
    elif scheme == "mix":
        fold[is_train | is_val] = TRAIN_ONLY
    else:  # train in 5 + val as 1 or 2 folds
        fold[is_train] = _grouped(out, is_train, 5, seed)
        val_folds = count - 5
        fold[is_val] = 5 if val_folds == 1 else 5 + _grouped(out, is_val, val_folds, seed)
    out["fold"] = fold
    return out
