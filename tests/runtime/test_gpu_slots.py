"""GPU jobs on one box with several (fake) devices pick a free one: never two on one device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from affectflow.runtime.gpu_slots import acquire_gpus, claim_gpus_for_job, device_pool

from conftest import REPO

# One "job": claim a device through the real module, record when it held which one.
WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from types import SimpleNamespace
    from affectflow.runtime.gpu_slots import claim_gpus_for_job
    out, hold = sys.argv[1], float(sys.argv[2])
    slot = claim_gpus_for_job(SimpleNamespace(resources={"gpu": 1}))
    start = time.time()
    time.sleep(hold)
    record = dict(pid=os.getpid(), device=os.environ["CUDA_VISIBLE_DEVICES"], start=start, end=time.time())
    with open(out, "w") as f:
        json.dump(record, f)
    """
)


def _env(tmp_path: Path, devices: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(AFFECTFLOW_GPU_DEVICES=devices, AFFECTFLOW_GPU_LOCK_DIR=str(tmp_path / "locks"),
               PYTHONPATH=str(REPO / "src"))
    return env


def _assert_never_shared(records: list[dict]) -> None:
    by_device: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        by_device.setdefault(r["device"], []).append((r["start"], r["end"]))
    for device, spans in by_device.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"device {device} shared: {spans}"


def test_pool_sources_in_order(tmp_path):
    (tmp_path / "nvidia0").touch()
    (tmp_path / "nvidia10").touch()
    (tmp_path / "nvidia2").touch()
    (tmp_path / "nvidiactl").touch()
    assert device_pool({}, dev_dir=tmp_path) == ["0", "2", "10"]
    assert device_pool({"CUDA_VISIBLE_DEVICES": "3,1"}, dev_dir=tmp_path) == ["3", "1"]
    assert device_pool({"CUDA_VISIBLE_DEVICES": ""}, dev_dir=tmp_path) == []
    assert device_pool({"AFFECTFLOW_GPU_DEVICES": "4", "CUDA_VISIBLE_DEVICES": "0"}) == ["0", "1", "2", "3"]
    assert device_pool({"AFFECTFLOW_GPU_DEVICES": "5,7"}) == ["5", "7"]
    assert device_pool({}, dev_dir=tmp_path / "missing") == []


def test_no_devices_means_cpu_and_no_claim(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFECTFLOW_GPU_DEVICES", "0")
    monkeypatch.setenv("AFFECTFLOW_GPU_LOCK_DIR", str(tmp_path))
    assert claim_gpus_for_job(SimpleNamespace(resources={"gpu": 1})) is None
    assert acquire_gpus(devices=[], directory=tmp_path) is None
    monkeypatch.setenv("AFFECTFLOW_GPU_DEVICES", "2")
    assert claim_gpus_for_job(SimpleNamespace(resources={"gpu": 0})) is None  # CPU rule


def test_claims_distinct_devices_then_waits_then_times_out(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    a = acquire_gpus(devices=["0", "1"], directory=tmp_path, set_env=False)
    b = acquire_gpus(devices=["0", "1"], directory=tmp_path, set_env=False)
    assert a.devices == ["0"] and b.devices == ["1"]
    with pytest.raises(TimeoutError, match="no 1 free GPU"):
        acquire_gpus(devices=["0", "1"], directory=tmp_path, timeout=0.3, set_env=False)
    a.release()
    with acquire_gpus(devices=["0", "1"], directory=tmp_path) as c:
        assert c.devices == ["0"] and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    with pytest.raises(ValueError, match="pool has 2"):
        acquire_gpus(3, devices=["0", "1"], directory=tmp_path)
    two = acquire_gpus(2, devices=["0", "1", "2"], directory=tmp_path, set_env=False)
    assert two.devices == ["0", "2"]  # "1" is still held by b
    b.release()
    two.release()


def test_scheduler_assigned_device_is_used_as_is(monkeypatch, tmp_path):
    monkeypatch.delenv("AFFECTFLOW_GPU_DEVICES", raising=False)
    monkeypatch.setenv("AFFECTFLOW_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # e.g. SLURM's allocation under cgroups
    assert claim_gpus_for_job(SimpleNamespace(resources={"gpu": 1})) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" and not list(tmp_path.iterdir())


@pytest.mark.parametrize("n_devices,n_jobs", [(2, 6), (3, 3), (4, 9)])
def test_concurrent_processes_never_share_a_device(tmp_path, n_devices, n_jobs):
    env = _env(tmp_path, str(n_devices))
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / f"job{i}.json"), "0.4"], env=env)
        for i in range(n_jobs)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    records = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(n_jobs)]
    _assert_never_shared(records)
    used = {r["device"] for r in records}
    assert used <= {str(i) for i in range(n_devices)}
    assert len(used) == min(n_devices, n_jobs)  # the pool is used, not just device 0


def test_a_killed_job_frees_its_device(tmp_path):
    env = _env(tmp_path, "1")
    holder = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "held.json"), "60"], env=env)
    lock = tmp_path / "locks" / "gpu-0.lock"
    for _ in range(100):
        if lock.exists() and lock.read_text().strip() == str(holder.pid):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the holder never took the lock")
    with pytest.raises(TimeoutError):
        acquire_gpus(devices=["0"], directory=tmp_path / "locks", timeout=0.3, set_env=False)
    holder.send_signal(signal.SIGKILL)  # as the scheduler would
    holder.wait(timeout=10)
    with acquire_gpus(devices=["0"], directory=tmp_path / "locks", timeout=5, set_env=False) as slot:
        assert slot.devices == ["0"]


