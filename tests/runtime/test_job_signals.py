"""A job stopped with SIGTERM (scancel, a time limit) removes its half-written shard and fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO

JOB = textwrap.dedent(
    """
    import sys, time
    from affectflow.runtime.atomic import atomic_path
    from affectflow.runtime.signals import exit_cleanly_on_sigterm
    if sys.argv[2] == "handled":
        exit_cleanly_on_sigterm()
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half a shard")
        print("writing", flush=True)
        time.sleep(60)
    """
)


@pytest.mark.parametrize("mode", ["handled", "default"])
def test_sigterm_mid_write(tmp_path, mode):
    out = tmp_path / "shard-0.h5"
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(out), mode], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.stdout.readline().strip() == "writing"
    assert [p.name for p in tmp_path.iterdir()][0].startswith(".shard-0.h5.tmp-")
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=30)
    left = sorted(p.name for p in tmp_path.iterdir())
    if mode == "handled":
        assert rc == 128 + signal.SIGTERM and left == []
    else:  # what the handler prevents: Python's default leaves the temporary file behind
        assert rc == -signal.SIGTERM and len(left) == 1 and not out.exists()
