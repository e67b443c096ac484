"""Cross-validation folds over the labelled (train + val) clips of a manifest.

Clips of the same subject always share a fold, so that a model is never validated on
a person it was trained on.  Clips whose subject is unknown (empty) are each their own
group — the best that can be done without identity labels.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = ["TEST_FOLD", "assign_folds"]

TEST_FOLD = -1  # fold value of test clips, which take part in no fold
_LABELLED_SPLITS = ("train", "val")


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
    bad = sorted(set(manifest["split"]) - {*_LABELLED_SPLITS, "test"}, key=str)
    if bad:
        raise ValueError(f"unknown split value(s) {bad}; expected one of train, val, test")

    out = manifest.copy()
    # Work on row positions, not index labels, so a duplicated index cannot misplace rows.
    fold = np.full(len(out), TEST_FOLD, dtype=np.int64)
    positions = np.flatnonzero(out["split"].isin(_LABELLED_SPLITS).to_numpy())

    # Group key per clip; the tag keeps a subject named "12" apart from clip id 12.
    subjects = out["subject"].iloc[positions].fillna("").astype(str).str.strip()
    ids = out["id"].iloc[positions]
    members: dict[tuple[str, str], list[int]] = {}
    for pos, s, i in zip(positions, subjects, ids):
        key = ("subject", s) if s else ("clip", str(i))
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
