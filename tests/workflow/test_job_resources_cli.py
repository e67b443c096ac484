"""The real Snakemake CLI for the tests of test_job_resources.py (slow)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from conftest import REPO


def test_rules_get_the_configured_resources(tmp_path):
    """A dry run shows the config's numbers on the jobs (and the schema accepts the section)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["resources"] = {"clips_per_shard": 50, "faces": {"gpu": 1, "mem_mb": 1000, "mem_mb_per_clip": 20},
                           "media": {"gpu": 0, "runtime": 3, "runtime_per_clip": 0.1}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
         "--cores", "2", "--configfile", str(path)], capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = proc.stdout.split("\nrule ")
    faces = next(b for b in blocks if b.startswith("faces:"))
    media = next(b for b in blocks if b.startswith("media:"))
    assert "gpu=1" in faces and "mem_mb=2000" in faces
    assert "gpu=0" in media and "runtime=8" in media
    config["resources"]["faces"]["mem_gb"] = 4
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
         "--configfile", str(path)], capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0 and "mem_gb" in proc.stdout + proc.stderr

