"""Per-job resources from the config: scaled with clips per shard, capped, GPU rules ask for a GPU."""

from __future__ import annotations

import pytest

from affectflow.config.resources import estimate_clips_per_shard, job_resources


def test_scale_with_clips_and_caps():
    small = job_resources("faces", None, clips=10)
    large = job_resources("faces", None, clips=1000)
    assert small["gpu"] == large["gpu"] == 1
    assert large["mem_mb"] > small["mem_mb"] and large["runtime"] > small["runtime"]
    spec = {"cpus": 1, "cpus_per_clip": 0.1, "max_cpus": 4, "mem_mb": 1000, "mem_mb_per_clip": 10}
    assert job_resources("features", spec, clips=15) == {"gpu": 1, "cpus": 3, "mem_mb": 1150, "runtime": 12}
    assert job_resources("features", spec, clips=500)["cpus"] == 4
    assert job_resources("media", None, clips=0)["gpu"] == 0


def test_bad_names_are_rejected_naming_them():
    with pytest.raises(ValueError, match="'mem_gb'"):
        job_resources("faces", {"mem_gb": 4}, clips=1)
    with pytest.raises(ValueError, match="'ensembel'.*faces"):
        job_resources("ensembel", None, clips=1)
    with pytest.raises(ValueError, match="clips"):
        job_resources("faces", None, clips=-1)


def test_clips_per_shard_estimate(tmp_path):
    assert estimate_clips_per_shard({"task": "emi", "root": "absent", "n_shards": 4, "demo": {"n_clips": 72}}) == 18
    assert estimate_clips_per_shard({"task": "emi", "root": "absent", "n_shards": 4, "demo": {"n_clips": 72}},
                                    {"clips_per_shard": 7}) == 7
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(9):
        (raw / f"{i}.mp4").touch()
    (raw / "notes.txt").touch()
    assert estimate_clips_per_shard({"task": "emi", "n_shards": 2, "root": str(tmp_path)}) == 5
    assert estimate_clips_per_shard({"task": "emi", "n_shards": 2, "root": str(tmp_path / "absent")}) == 100




def test_clips_per_shard_estimate_counts_affwild2_annotation_tracks(tmp_path):
    va = tmp_path / "Annotations" / "VA_Estimation_Challenge"
    for part, n in (("Train_Set", 7), ("Validation_Set", 3)):
        (va / part).mkdir(parents=True)
        for i in range(n):
            (va / part / f"video{i}.txt").touch()
    (tmp_path / "Annotations" / "AU_Detection_Challenge" / "Train_Set").mkdir(parents=True)
    (tmp_path / "Annotations" / "AU_Detection_Challenge" / "Train_Set" / "video0.txt").touch()
    assert estimate_clips_per_shard({"n_shards": 4, "root": str(tmp_path), "task": "va"}) == 3  # ceil(10 / 4)
    assert estimate_clips_per_shard({"n_shards": 4, "root": str(tmp_path), "task": "au"}) == 1


def test_train_memory_does_not_grow_with_the_clips():
    """A train job reads its features from a memory-mapped store: mem_mb follows the model and batch
    (the configured value), runtime still the clips; a per-clip memory for train is refused."""
    few, many = job_resources("train", None, clips=10), job_resources("train", None, clips=100_000)
    assert few["mem_mb"] == many["mem_mb"] == 2000
    assert many["runtime"] > few["runtime"]
    assert job_resources("train", {"mem_mb": 8000}, clips=5000)["mem_mb"] == 8000
    with pytest.raises(ValueError, match=r"resources.train.mem_mb_per_clip: .*memory-mapped"):
        job_resources("train", {"mem_mb_per_clip": 100}, clips=10)
    assert job_resources("features", None, clips=1000)["mem_mb"] > job_resources("features", None, clips=10)["mem_mb"]
