"""Decode a video once, at a fixed frame rate, as RGB frames streamed from ffmpeg."""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterator

import ffmpeg
import numpy as np

from affectflow.runtime.ffmpeg import ffmpeg_exe


class DecodeError(RuntimeError):
    """ffmpeg failed on a clip; ``frames_read`` frames had been delivered before the failure.

    A truncated file typically yields its first frames and then fails: the caller keeps what it
    got (QC status ``truncated``) instead of losing the clip.
    """

    def __init__(self, message: str, *, frames_read: int) -> None:
        super().__init__(message)
        self.frames_read = frames_read


def output_size(width: int, height: int, *, max_side: int) -> tuple[int, int]:
    """Frame size after scaling so the longer side is at most ``max_side`` (even numbers)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def display_size(width: int, height: int, *, rotation: int) -> tuple[int, int]:
    """The upright size of a ``width`` x ``height`` stream shown with ``rotation`` degrees.

    ffmpeg applies the rotation metadata when decoding (autorotate), so a phone video stored
    as 1280x720 with rotation 90 comes out 720x1280.
    """
    if int(round(rotation / 90)) % 2:
        return height, width
    return width, height


class _StderrTail:
    """Drain a pipe in a thread, keeping its last ``limit`` bytes.

    Without this, a damaged file that makes ffmpeg write more than a pipe buffer (64 KiB) of
    errors would block ffmpeg while we wait on its stdout: a deadlock.
    """

    def __init__(self, pipe, *, limit: int = 4000) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe) -> None:
        for chunk in iter(lambda: pipe.read(1024), b""):
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size > self._limit and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())
        pipe.close()

    def text(self) -> str:
        self._thread.join(timeout=10)
        return b"".join(self._chunks).decode(errors="replace")[-self._limit :]


def iter_frame_batches(
    path: str | os.PathLike,
    *,
    width: int,
    height: int,
    fps: float,
    max_side: int,
    batch_size: int,
    rotation: int = 0,
    max_seconds: float | None = None,
    warnings: list[str] | None = None,
) -> Iterator[np.ndarray]:
    """Yield batches of RGB frames, shape (B, H, W, 3) uint8, resampled to ``fps``.

    Frames are streamed through a pipe, so memory stays bounded by one batch whatever the
    clip length. ``width``/``height`` are the stored (probe) size and ``rotation`` the display
    rotation: the output is upright and its size is forced with ``scale``, so neither rotation
    nor an odd size can change the frame size we read. Grayscale and variable-frame-rate input
    come out as RGB at a constant ``fps``. ``max_seconds`` cuts the clip (nothing after it is
    decoded). Non-fatal decoder complaints are appended to ``warnings`` when given; a failing
    ffmpeg raises :class:`DecodeError` after the frames it delivered.
    """
    if width <= 0 or height <= 0:
        raise DecodeError(f"{path}: no video size (width={width}, height={height})", frames_read=0)
    upright_w, upright_h = display_size(width, height, rotation=rotation)
    out_w, out_h = output_size(upright_w, upright_h, max_side=max_side)
    input_args = {"t": max_seconds} if max_seconds else {}
    process = (
        ffmpeg.input(str(path), **input_args)
        .video.filter("fps", fps=fps)
        .filter("scale", out_w, out_h)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .global_args("-nostdin", "-loglevel", "error")
        .run_async(cmd=ffmpeg_exe(), pipe_stdout=True, pipe_stderr=True)
    )
    stderr = _StderrTail(process.stderr)
    frame_bytes = out_w * out_h * 3
    batch: list[np.ndarray] = []
    n = 0
    try:
        while True:
            buf = process.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            batch.append(np.frombuffer(buf, dtype=np.uint8).reshape(out_h, out_w, 3))
            n += 1
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
    finally:
        process.stdout.close()
        code = process.wait()
    message = stderr.text().strip()
    if code != 0:
        raise DecodeError(f"{path}: ffmpeg video decode failed ({code}) after {n} frames: {message[-500:]}",
                          frames_read=n)
    if message and warnings is not None:
        warnings.append(message[-300:])
