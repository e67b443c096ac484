"""A damaged cached shard fails its reader with the shard's path, what is wrong and the rebuild command.

The shards are real: written by the project's ShardWriter, then damaged the ways a copy or a disk
damages them (cut short, header overwritten, empty, one clip's entry overwritten).
"""

from __future__ import annotations

import os
import pickle
import re

import h5py
import numpy as np
import pytest

from affectflow.h5store import ShardWriter, iter_clips, open_shard, read_file_attrs
from affectflow.runtime.cache_errors import (
    DamagedCacheError,
    MissingCacheError,
    cache_error,
    rebuild_command,
)
from affectflow.training.sequences import load_features

CLIPS = 5


def write_shard(path, *, crops: bool = False):
    """A features-like shard of CLIPS clips (with JPEG-like crops when ``crops``)."""
    rng = np.random.default_rng(0)
    with ShardWriter(path, file_attrs={"stage": "features", "sample_rate": 16000}) as writer:
        for clip_id in range(CLIPS):
            arrays = {"features": rng.normal(size=(400, 32)).astype(np.float32),
                      "timestamps": np.arange(400, dtype=np.float64) / 25}
            if crops:
                arrays = {"crops": [b"\xff\xd8" + bytes(200)] * 4, "valid": np.ones(4, bool),
                          "timestamps": np.arange(4) / 25.0}
            writer.add_clip(clip_id, arrays, {"qc_status": "ok"})
    return path


def truncate_half(path):
    os.truncate(path, os.path.getsize(path) // 2)


def overwrite_header(path):
    with open(path, "r+b") as fh:
        fh.write(b"\x00garbage" * 8)


def empty(path):
    open(path, "wb").close()


DAMAGES = {
    "truncated": (truncate_half, r"the file is cut short, \d+ of \d+ bytes are on disk", "truncated file: eof = "),
    "garbage": (overwrite_header, "it is not an HDF5 file", "file signature not found"),
    "empty": (empty, r"the file is empty \(0 bytes\)", "file signature not found"),
}

READERS = {
    "read_file_attrs": read_file_attrs,
    "iter_clips": lambda path: list(iter_clips(path)),
    "iter_clips_names": lambda path: list(iter_clips(path, ("timestamps",))),
    "open_shard": lambda path: open_shard(path).close(),
    "load_features": lambda path: load_features([path]),
}


def assert_names_the_shard(err: DamagedCacheError, path, reason: str, detail: str) -> None:
    message = str(err)
    assert str(path) in message
    assert f"--forcerun {path}" in message
    assert f"snakemake --cores all --forcerun {path}" in message
    assert re.search(reason, message), message
    assert detail in message
    assert err.path == str(path)
    assert isinstance(err.__cause__, (OSError, KeyError, RuntimeError))


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_damaged_shard_is_named(tmp_path, damage, reader):
    path = write_shard(tmp_path / "results" / "features" / "shard-3.h5")
    mutate, reason, detail = DAMAGES[damage]
    mutate(path)
    with pytest.raises(DamagedCacheError) as info:
        READERS[reader](path)
    assert_names_the_shard(info.value, path, reason, detail)
    assert not isinstance(info.value, MissingCacheError)
    assert isinstance(info.value, OSError)  # what h5py raised before: a caller handling that still does


@pytest.mark.parametrize("reader", sorted(READERS))
def test_missing_shard_says_missing(tmp_path, reader):
    path = tmp_path / "results" / "features" / "shard-0.h5"
    with pytest.raises(MissingCacheError) as info:
        READERS[reader](path)
    message = str(info.value)
    assert f"cache file {path} is missing" in message
    assert f"snakemake --cores all --forcerun {path}" in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DamagedCacheError)


def _entry_address(path, name: str) -> int:
    with h5py.File(path, "r") as h5:
        return h5py.h5o.get_info(h5[name].id).addr


@pytest.mark.parametrize("entry", ["clips/3", "clips/3/features"])
def test_damage_inside_a_clip_names_the_clip(tmp_path, entry):
    """The file opens (its header and size are intact) but clip 3's entry was overwritten: the
    clips before it are read, then the error names the shard and clip 3."""
    path = write_shard(tmp_path / "shard-0.h5")
    address = _entry_address(path, entry)
    with open(path, "r+b") as fh:
        fh.seek(address)
        fh.write(b"\xab" * 64)
    read = []
    with pytest.raises(DamagedCacheError) as info:
        for clip_id, _, _ in iter_clips(path):
            read.append(clip_id)
    assert read == ["0", "1", "2"]
    message = str(info.value)
    assert f"damaged cache file {path}, clip 3: " in message
    assert "its contents are damaged" in message and "bad object header" in message
    assert f"--forcerun {path}" in message
    assert info.value.clip_id == "3"
    with pytest.raises(DamagedCacheError, match="clip 3"):
        load_features([path])


def test_missing_clips_group_is_named(tmp_path):
    path = tmp_path / "not_a_shard.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["stage"] = "features"
    assert read_file_attrs(path) == {"stage": "features"}
    with pytest.raises(DamagedCacheError, match=r"it has no 'clips' entry") as info:
        list(iter_clips(path))
    assert f"--forcerun {path}" in str(info.value)
    assert info.value.clip_id is None


def test_readers_own_errors_are_not_wrapped(tmp_path):
    """An error of the code that consumes the clips is that code's error, not a damaged cache."""
    path = write_shard(tmp_path / "shard-0.h5")
    with pytest.raises(KeyError, match="no_such_array") as info:
        for _, arrays, _ in iter_clips(path):
            arrays["no_such_array"]
    assert not isinstance(info.value, DamagedCacheError)
    assert len(load_features([path])) == CLIPS  # an intact shard reads as before


@pytest.mark.parametrize("workers", [0, 1])
def test_crop_batches_name_a_truncated_faces_shard(tmp_path, workers):
    from affectflow.features.stage import crop_batches

    path = write_shard(tmp_path / "faces" / "shard-1.h5", crops=True)
    truncate_half(path)
    loader = crop_batches(path, [("0", 0), ("0", 1)], batch_size=2, num_workers=workers)
    # In a worker, DataLoader re-raises the same class with the worker's traceback as its message.
    with pytest.raises(DamagedCacheError, match="truncated file: eof = ") as info:
        next(iter(loader))
    assert f"snakemake --cores all --forcerun {path}" in str(info.value)


def test_rebuild_command_quotes_the_path():
    assert rebuild_command("results/a b/shard-0.h5") == "snakemake --cores all --forcerun 'results/a b/shard-0.h5'"


def test_error_survives_pickling(tmp_path):
    err = cache_error(tmp_path / "x.h5", OSError("Unable to synchronously open file (file signature not found)"),
                      clip_id="7")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DamagedCacheError
    assert str(back) == str(err)
    assert (back.path, back.clip_id, back.detail) == (str(tmp_path / "x.h5"), "7", "file signature not found")
