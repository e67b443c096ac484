"""The real Snakemake CLI for the tests of test_au_masking.py (slow)."""

from __future__ import annotations

from test_au_masking import (  # noqa: F401  (helpers and fixtures shared with the unit tests)
    _demo_config,
    _write,
)

from conftest import dry_run_jobs, run_snakemake


def test_workflow_refuses_a_mask_on_an_audio_backbone_at_start(tmp_path):
    config = _demo_config(tmp_path)
    config["features"]["mfcc128"]["mask"] = "upper"
    proc = run_snakemake(tmp_path, "-n", "--configfile", _write(tmp_path, config), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "features.mfcc128.mask" in out and "audio" in out


def test_workflow_builds_the_masked_shards_a_run_trains_on(tmp_path):
    config = _demo_config(tmp_path)
    config["features"]["dlib_face128_upper"] = {**config["features"]["dlib_face128"], "backbone": "dlib_face128",
                                                "mask": "upper"}
    config["train"]["runs"]["visual_gru"]["mask_augment"] = {"upper": "dlib_face128_upper"}
    proc = run_snakemake(tmp_path, "-n", "--configfile", _write(tmp_path, config))
    features = sorted(w["s"] for rule, w in dry_run_jobs(proc.stdout)
                      if rule == "features" and w.get("backbone") == "dlib_face128_upper")
    assert features == ["0", "1"], proc.stdout[-3000:]

