"""One job per GPU on a box with several: a lock file per device.

``snakemake --resources gpu=N`` only counts: it lets N GPU jobs run at once but does not say
which job gets which device, so without help they all land on device 0. A GPU job therefore
claims a free device before it touches CUDA: it takes an exclusive ``flock`` on
``<lock dir>/gpu-<device>.lock`` (non-blocking, trying each device in turn, waiting while all
are taken), sets ``CUDA_VISIBLE_DEVICES`` for its own process to the devices it holds, and keeps
the lock for its lifetime. The kernel drops a ``flock`` when the process exits, however it
exits (a ``SIGKILL`` from the scheduler included), so a killed job never leaves a device
locked.

The device pool is, in order: ``AFFECTFLOW_GPU_DEVICES`` (a count ``"4"`` or a list ``"0,2,3"``;
tests use it to fake devices), else ``CUDA_VISIBLE_DEVICES`` when set (by the user, or by SLURM
for the devices it allocated), else the ``/dev/nvidia<N>`` device files. No devices: no claim,
the job runs on CPU. The lock directory is ``AFFECTFLOW_GPU_LOCK_DIR``, else
``/tmp/affectflow-gpu-locks`` (it must be shared by every job on the box, not per work dir).

    slot = claim_gpus_for_job(snakemake)   # first thing in a GPU rule's script
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GpuSlot", "acquire_gpus", "claim_gpus_for_job", "device_pool", "lock_dir"]

ENV_DEVICES = "AFFECTFLOW_GPU_DEVICES"
ENV_LOCK_DIR = "AFFECTFLOW_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = "/tmp/affectflow-gpu-locks"
_NVIDIA_DEVICE = re.compile(r"^nvidia(\d+)$")
_held: list[GpuSlot] = []  # claims kept alive for the life of the process

log = logging.getLogger(__name__)


def device_pool(env: Mapping[str, str] | None = None, dev_dir: str | os.PathLike = "/dev") -> list[str]:
    """The device ids a job may claim (see the module docstring for the order of sources)."""
    env = os.environ if env is None else env
    fake = env.get(ENV_DEVICES)
    if fake is not None and fake.strip() != "":
        fake = fake.strip()
        if fake.isdigit():
            return [str(i) for i in range(int(fake))]
        return [d.strip() for d in fake.split(",") if d.strip()]
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        names = os.listdir(dev_dir)
    except OSError:
        return []
    return [m.group(1) for m in sorted((_NVIDIA_DEVICE.match(n) for n in names), key=_key) if m]


def _key(match: re.Match | None) -> int:
    return int(match.group(1)) if match else -1


def lock_dir(env: Mapping[str, str] | None = None) -> Path:
    """The directory of the GPU lock files (``AFFECTFLOW_GPU_LOCK_DIR``, else the default)."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_LOCK_DIR) or DEFAULT_LOCK_DIR)


@dataclass
class GpuSlot:
    """Devices held by this process; ``release()`` (or process exit) frees them."""

    devices: list[str]
    lock_paths: list[Path]
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for fd in self._fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._fds.clear()

    def __enter__(self) -> GpuSlot:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _safe(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", device)


def acquire_gpus(
    n: int = 1,
    *,
    devices: Sequence[str] | None = None,
    directory: str | os.PathLike | None = None,
    timeout: float | None = None,
    poll_s: float = 0.2,
    set_env: bool = True,
) -> GpuSlot | None:
    """Claim ``n`` free devices of the pool, waiting while fewer are free.

    Returns ``None`` when the pool is empty (no GPU: run on CPU). Sets ``CUDA_VISIBLE_DEVICES``
    of this process to the claimed devices when ``set_env``. Raises ``TimeoutError`` after
    ``timeout`` seconds, and ``ValueError`` when the pool has fewer than ``n`` devices.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, not {n!r}")
    pool = list(device_pool() if devices is None else devices)
    if not pool:
        return None
    if n > len(pool):
        raise ValueError(f"asked for {n} GPUs, but the pool has {len(pool)}: {pool}")
    root = Path(directory) if directory is not None else lock_dir()
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        try:
            root.chmod(0o1777)  # shared by every user's jobs on the box, like /tmp
        except OSError:
            pass
    deadline = None if timeout is None else time.monotonic() + timeout
    waited = False
    while True:
        slot = GpuSlot([], [])
        for device in pool:
            path = root / f"gpu-{_safe(device)}.lock"
            fd = _try_lock(path)
            if fd is None:
                continue
            slot.devices.append(device)
            slot.lock_paths.append(path)
            slot._fds.append(fd)
            if len(slot.devices) == n:
                break
        if len(slot.devices) == n:
            if set_env:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(slot.devices)
            log.info("claimed GPU %s (lock %s)", ",".join(slot.devices), root)
            return slot
        slot.release()  # never sit on part of a request while waiting for the rest
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"no {n} free GPU(s) among {pool} after {timeout} s (locks in {root})")
        if not waited:
            log.info("all of GPUs %s are taken; waiting for one (locks in %s)", pool, root)
            waited = True
        time.sleep(poll_s)


def claim_gpus_for_job(snakemake) -> GpuSlot | None:
    """In a rule's script: claim as many devices as the job's ``gpu`` resource, held until exit."""
    try:
        wanted = int(snakemake.resources.get("gpu", 0))
    except (AttributeError, TypeError, ValueError):
        wanted = 0
    if wanted < 1:
        return None
    pool = device_pool()
    if not pool:
        log.info("no GPU visible: running on CPU")
        return None
    if ENV_DEVICES not in os.environ and "CUDA_VISIBLE_DEVICES" in os.environ and len(pool) <= wanted:
        # Already assigned (a scheduler's allocation, or the user's choice): nothing to pick.
        # Locking here could even be wrong: under device cgroups every job sees its GPU as "0".
        log.info("using the assigned GPU(s) %s", ",".join(pool))
        return None
    slot = acquire_gpus(min(wanted, len(pool)), devices=pool)
    if slot is not None:
        _held.append(slot)
        atexit.register(slot.release)
    return slot
