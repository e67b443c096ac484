"""Decode a video once, at a fixed frame rate, as RGB frames streamed from ffmpeg."""

from __future__ import annotations

import os
from collections.abc import Iterator

import ffmpeg
import numpy as np

from affectflow.ffmpeg_tools import ffmpeg_exe


def output_size(width: int, height: int, *, max_side: int) -> tuple[int, int]:
    """Frame size after scaling so the longer side is at most ``max_side`` (even numbers)."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def iter_frame_batches(
    path: str | os.PathLike,
    *,
    width: int,
    height: int,
    fps: float,
    max_side: int,
    batch_size: int,
) -> Iterator[np.ndarray]:
    """Yield batches of RGB frames, shape (B, H, W, 3) uint8, resampled to ``fps``.

    Frames are streamed through a pipe, so memory stays bounded by one batch whatever the
    clip length. The output size is forced with ``scale`` so a rotated or odd-sized input
    cannot change the frame size we read.
    """
    out_w, out_h = output_size(width, height, max_side=max_side)
    process = (
        ffmpeg.input(str(path))
        .video.filter("fps", fps=fps)
        .filter("scale", out_w, out_h)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .global_args("-nostdin", "-loglevel", "error")
        .run_async(cmd=ffmpeg_exe(), pipe_stdout=True, pipe_stderr=True)
    )
    frame_bytes = out_w * out_h * 3
    batch: list[np.ndarray] = []
    try:
        while True:
            buf = process.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            batch.append(np.frombuffer(buf, dtype=np.uint8).reshape(out_h, out_w, 3))
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
    finally:
        process.stdout.close()
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"{path}: ffmpeg video decode failed ({code}): {stderr[-500:]}")
