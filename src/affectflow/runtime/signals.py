"""A job stopped by its scheduler cleans up after itself.

SLURM (``scancel``, a time limit, preemption) and Snakemake stop a job with ``SIGTERM`` and
only after a grace period (SLURM's ``KillWait``, 30 s by default) with ``SIGKILL``. Python's
default for ``SIGTERM`` is to die at once, skipping ``finally`` clauses and ``with`` exits, so
a shard half-written to its temporary name (``affectflow.runtime.atomic``) would stay on disk. After
``exit_cleanly_on_sigterm()`` the signal raises ``SystemExit`` instead: the temporary file is
removed on the way out, and the job still ends with a failure (exit status 128 + 15).

    exit_cleanly_on_sigterm()   # first thing in a rule's script, never at import
"""

from __future__ import annotations

import logging
import signal
import threading

__all__ = ["exit_cleanly_on_sigterm"]

log = logging.getLogger(__name__)


def _raise_system_exit(signum, frame) -> None:
    log.error("stopped by signal %d (scheduler or Snakemake): cleaning up", signum)
    raise SystemExit(128 + signum)


def exit_cleanly_on_sigterm() -> bool:
    """Make ``SIGTERM`` raise ``SystemExit`` in this process. Returns False off the main thread
    (signal handlers can only be set there), where it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _raise_system_exit)
    return True
