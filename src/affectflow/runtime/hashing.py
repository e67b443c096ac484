"""sha256 checksums of weights files and model directories, memoised by size and mtime.

A changed checkpoint changes its checksum and so the cache key of every feature it made.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path


@cache
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file, so a changed checkpoint changes the cache key."""
    stat = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


# Files of a local model directory (transformers ``save_pretrained``, or a speechbrain recipe's
# checkpoint directory) that decide its output; tokenizer or README files do not.
MODEL_DIR_FILES = ("config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin",
                   "hyperparams.yaml", "embedding_model.ckpt", "mean_var_norm_emb.ckpt")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt")


def dir_sha256(directory: str | os.PathLike) -> str:
    """One sha256 over a model directory's config and weight files (sharded weights included)."""
    directory = Path(directory)
    files = sorted(
        p for p in directory.iterdir()
        if p.is_file() and (p.name in MODEL_DIR_FILES or p.name.startswith(("model-", "pytorch_model-")))
    )
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise FileNotFoundError(
            f"{directory}: no model weights (expected model.safetensors or pytorch_model.bin, "
            "as written by save_pretrained, or a speechbrain embedding_model.ckpt)"
        )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()
