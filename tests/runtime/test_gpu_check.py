"""bench/gpu_check.py (issue 15): the script that proves the GPU paths runs, on the CPU, as CI runs it,
so that it cannot rot: one JSON line, every section passing on its measured values, and a failed
comparison failing the script."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "bench" / "gpu_check.py"
SECTIONS = ("mtcnn", "features", "temporal_amp", "finetune_amp", "gpu_slots")


def _run(*args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("AFFECTFLOW_GPU_DEVICES", "AFFECTFLOW_GPU_LOCK_DIR")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got {proc.stdout[-2000:]!r}\n{proc.stderr[-3000:]}"
    return proc, json.loads(lines[0])


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _trained_with_amp(run: dict) -> None:
    assert _positive(run["samples_per_s"])
    assert run["finite_loss"] and all(math.isfinite(v) for v in run["train_loss"])
    assert run["autocast"] == "bfloat16" and run["amp_forced_on_cpu"]  # the loop's autocast, switched on
    assert run["weights_fp32"] and run["weights_moved"]
    assert run["peak_gpu_mem_mb"] is None  # no GPU: nothing to report, rather than a made-up 0
    assert run["ok"]


@pytest.fixture(scope="module")
def cpu_run():
    proc, result = _run()
    assert proc.returncode == 0, proc.stderr[-4000:]
    return result


def test_every_section_runs_on_the_cpu_and_passes(cpu_run):
    assert cpu_run["device"] == "cpu" and cpu_run["quick"] is True
    assert all(cpu_run[name]["ok"] for name in SECTIONS), {n: cpu_run[n] for n in SECTIONS if not cpu_run[n]["ok"]}
    assert cpu_run["ok"] is True
    assert cpu_run["seconds"] < 300  # --quick is what CI runs: ~12 s here, far below a busy runner's bound


def test_batched_mtcnn_boxes_equal_per_frame_detection(cpu_run):
    mtcnn = cpu_run["mtcnn"]
    assert _positive(mtcnn["fps"]) and mtcnn["frames"] == 8
    assert mtcnn["frames_with_face"] == mtcnn["frames"]  # the talker, in every demo frame: not a vacuous check
    assert mtcnn["face_count_mismatches"] == 0
    assert 0 <= mtcnn["max_box_diff_px"] <= mtcnn["tolerance_px"] == 2.0


def test_features_under_bf16_autocast_in_channels_last_match_fp32(cpu_run):
    features = cpu_run["features"]
    assert _positive(features["fps"]) and _positive(features["forward_fps"])
    assert features["autocast"] == "bfloat16" and features["channels_last"] is True
    assert features["tolerance"] == 0.03
    # bf16 changes the features, but by far less than the tolerance
    assert 0 < features["rel_diff"] <= features["tolerance"]
    assert 0 < features["max_abs_diff"] < features["reference_max_abs"]
    # the CPU stage runs fp32: the reference's own path, up to summation order
    assert features["stage_autocast"] is False and features["stage_rel_diff"] <= features["stage_tolerance"] <= 1e-4


def test_temporal_and_finetune_training_under_amp(cpu_run):
    temporal = cpu_run["temporal_amp"]
    assert temporal["model"] == "tcn_transformer" and temporal["carry_state"]["model"] == "transformer_lstm"
    _trained_with_amp(temporal)
    _trained_with_amp(temporal["carry_state"])
    finetune = cpu_run["finetune_amp"]
    assert finetune["model"] == "finetune"
    _trained_with_amp(finetune)
    _trained_with_amp(finetune["checkpointing"])


def test_two_gpu_jobs_claim_distinct_devices(cpu_run):
    slots = cpu_run["gpu_slots"]
    assert slots["mode"] == "no GPU: two fake devices"
    assert sorted(slots["devices"]) == ["0", "1"] and slots["distinct"] is True
    assert slots["overlapped"] is True and slots["exit_codes"] == [0, 0]


def test_a_failed_comparison_fails_the_script():
    """Zero tolerance: bf16 features cannot equal fp32 ones; the JSON line still comes, exit status 1."""
    proc, result = _run("--only", "features", "--tolerance-scale", "0")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert result["ok"] is False and result["features"]["ok"] is False
    assert result["features"]["tolerance"] == 0 and result["features"]["rel_diff"] > 0
    assert not any(name in result for name in SECTIONS if name != "features")
