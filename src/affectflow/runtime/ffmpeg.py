"""Locate the ffmpeg binary: the system one if on PATH, else the one shipped in imageio-ffmpeg."""

from __future__ import annotations

import functools
import shutil


@functools.cache
def ffmpeg_exe() -> str:
    """Path of an ffmpeg executable.

    A system ffmpeg wins (it may have more codecs); otherwise the static build inside the
    ``imageio-ffmpeg`` wheel is used, so a pip-only install works on a bare machine.
    """
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
