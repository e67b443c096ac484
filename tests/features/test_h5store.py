"""Tests of the HDF5 shard store and of atomic output paths."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from affectflow.h5store import ShardWriter, iter_clips, read_file_attrs
from affectflow.runtime.atomic import atomic_path, write_text_atomic


class Boom(RuntimeError):
    pass


def test_shard_writer_round_trip(tmp_path):
    path = tmp_path / "shard.h5"
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(7, 5)).astype(np.float32)
    audio = np.arange(-5, 5, dtype=np.int16)
    blobs = [b"\xff\xd8abc", b"", bytes(range(256))]
    params = {"b": 2, "a": [1, 2.5], "nested": {"x": "y"}}
    with ShardWriter(path, file_attrs={"stage": "test", "n": 3, "params": params, "none": None}) as writer:
        writer.add_clip(12, {"features": feats, "audio": audio}, {"qc_status": "ok", "fps": 29.97})
        writer.add_clip("abc", {"crops": blobs, "empty": np.zeros((0, 5), np.float32)},
                        {"qc_status": "no_face", "detector_params": {"min_face_size": 40}})
        # not yet visible under its final name while open
        assert not path.exists()
    assert path.exists()

    attrs = read_file_attrs(path)
    assert attrs["stage"] == "test"
    assert attrs["n"] == 3
    assert json.loads(attrs["params"]) == params
    assert attrs["none"] == ""

    clips = {clip_id: (arrays, clip_attrs) for clip_id, arrays, clip_attrs in iter_clips(path)}
    assert set(clips) == {"12", "abc"}
    arrays, clip_attrs = clips["12"]
    assert arrays["features"].dtype == np.float32
    np.testing.assert_array_equal(arrays["features"], feats)
    assert arrays["audio"].dtype == np.int16
    np.testing.assert_array_equal(arrays["audio"], audio)
    assert clip_attrs["qc_status"] == "ok"
    assert clip_attrs["fps"] == pytest.approx(29.97)

    arrays, clip_attrs = clips["abc"]
    assert arrays["crops"] == blobs
    assert arrays["empty"].shape == (0, 5)
    assert clip_attrs["qc_status"] == "no_face"
    assert json.loads(clip_attrs["detector_params"]) == {"min_face_size": 40}
    # only the target file is left in the directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.h5"]


def test_shard_writer_failure_leaves_nothing(tmp_path):
    path = tmp_path / "out" / "shard.h5"
    with pytest.raises(Boom):
        with ShardWriter(path, file_attrs={"stage": "test"}) as writer:
            writer.add_clip(1, {"features": np.ones((3, 2))})
            raise Boom("half way")
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_shard_writer_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "shard.h5"
    with ShardWriter(path, file_attrs={"version": 1}) as writer:
        writer.add_clip(1, {"features": np.ones((2, 2))})
    with pytest.raises(Boom):
        with ShardWriter(path, file_attrs={"version": 2}) as writer:
            writer.add_clip(2, {"features": np.zeros((2, 2))})
            raise Boom()
    assert read_file_attrs(path)["version"] == 1
    assert [c for c, _, _ in iter_clips(path)] == ["1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.h5"]


def test_atomic_path_success_and_failure(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as tmp:
        assert tmp != target
        assert tmp.parent == target.parent
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"

    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise Boom()
    assert target.read_text() == "hello"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]

    other = tmp_path / "never.txt"
    with pytest.raises(Boom):
        with atomic_path(other) as tmp:
            tmp.write_text("partial")
            raise Boom()
    assert not other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_atomic_path_with_h5py(tmp_path):
    target = tmp_path / "x.h5"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            with h5py.File(tmp, "w") as h5:
                h5["a"] = np.arange(3)
            raise Boom()
    assert list(tmp_path.iterdir()) == []


def test_write_text_atomic(tmp_path):
    target = tmp_path / "a" / "b.json"
    write_text_atomic(target, "{}")
    write_text_atomic(target, '{"x": 1}')
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]
