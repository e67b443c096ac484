"""Stable assignment of clips to shards, so that parallel jobs split the work.

The shard of a clip depends only on its id and the number of shards: it must not
change between processes or Python versions, or a re-run would redo (or skip) work.
Python's built-in ``hash()`` of a string is salted per process, hence SHA-1.
"""

from __future__ import annotations

import hashlib
import numbers

import pandas as pd

__all__ = ["assign_shards", "shard_of"]


def _check_n_shards(n_shards: object) -> int:
    if isinstance(n_shards, bool) or not isinstance(n_shards, numbers.Integral) or n_shards < 1:
        raise ValueError(f"n_shards must be an integer >= 1, got {n_shards!r}")
    return int(n_shards)


def _key(clip_id: object) -> str:
    # Integral ids (int, numpy.int64) are keyed by their decimal form, so 7 and
    # numpy.int64(7) land in the same shard; other ids (e.g. video names) by str().
    if isinstance(clip_id, numbers.Integral) and not isinstance(clip_id, bool):
        return str(int(clip_id))
    return str(clip_id)


def shard_of(clip_id: object, n_shards: int) -> int:
    """Shard index in ``[0, n_shards)`` of ``clip_id``: first 8 bytes of SHA-1(str(id)) mod n."""
    n = _check_n_shards(n_shards)
    digest = hashlib.sha1(_key(clip_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def assign_shards(manifest: pd.DataFrame, n_shards: int) -> pd.DataFrame:
    """Return a copy of ``manifest`` with an int ``shard`` column computed from ``id``."""
    n = _check_n_shards(n_shards)
    if "id" not in manifest.columns:
        raise ValueError(f"manifest has no 'id' column (columns: {list(manifest.columns)})")
    out = manifest.copy()
    out["shard"] = pd.Series([shard_of(i, n) for i in out["id"]], index=out.index, dtype="int64")
    return out
