"""The real Snakemake CLI for the tests of test_gpu_slots.py (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from test_gpu_slots import (  # noqa: F401  (helpers and fixtures shared with the unit tests)
    WORKER,
    _assert_never_shared,
    _env,
)


def test_snakemake_gpu_jobs_on_fake_devices_use_distinct_devices(tmp_path):
    """The real scheduler: --resources gpu=3 lets 3 jobs run at once; the locks spread them."""
    snakefile = tmp_path / "Snakefile"
    script = tmp_path / "job.py"
    script.write_text(WORKER.replace("sys.argv[1], float(sys.argv[2])", "snakemake.output[0], 1.0").replace(
        'SimpleNamespace(resources={"gpu": 1})', "snakemake"))
    snakefile.write_text(textwrap.dedent(
        """
        rule all:
            input: expand("out/{i}.json", i=range(6))

        rule gpu_job:
            output: "out/{i}.json"
            resources: gpu=1
            script: "job.py"
        """
    ))
    env = _env(tmp_path, "3")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(tmp_path), "--cores", "6",
         "--resources", "gpu=3"], env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads((tmp_path / "out" / f"{i}.json").read_text()) for i in range(6)]
    _assert_never_shared(records)
    assert {r["device"] for r in records} == {"0", "1", "2"}
    # the jobs did overlap in time (three at once), so the distinct devices are the locks' doing
    assert any(a["start"] < b["end"] and b["start"] < a["end"]
               for i, a in enumerate(records) for b in records[i + 1:])

