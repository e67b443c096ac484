"""Tiny real clips for the data set fixtures, rendered with the demo's ffmpeg recipe.

Every clip comes from :func:`affectflow.demo.build.ffmpeg_command` (a real face from the demo
sources, LibriVox speech over a pink-noise floor, H.264 + AAC), so the face detectors find a
face and audio features are non-empty. :func:`render_clip` can add a time-varying brightness
and loudness on top of the demo's constant ones, which is what the per-frame fixtures plant
their labels on.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd

from affectflow.demo import build as demo
from affectflow.runtime.atomic import atomic_path
from affectflow.runtime.ffmpeg import ffmpeg_exe

__all__ = ["DEFAULT_RESOURCES", "clip_row", "hstack_clips", "render_clip", "resources_dir", "speech_track"]

#: the demo sources in a source checkout (``resources/demo`` next to ``src/``)
DEFAULT_RESOURCES = Path(__file__).resolve().parents[3] / "resources" / "demo"


def resources_dir(path: str | Path | None = None) -> Path:
    """The demo source folder: ``path`` or :data:`DEFAULT_RESOURCES`; fails if it is missing."""
    folder = Path(path) if path is not None else DEFAULT_RESOURCES
    for name in (demo.MOVIE_NAME, demo.ASTRONAUT_NAME, demo.SPEECH_DIR):
        if not (folder / name).exists():
            raise FileNotFoundError(
                f"demo source {folder / name} is missing (pass resources= the resources/demo folder of a checkout)"
            )
    return folder


def speech_track(resources: Path, dest: Path) -> Path:
    """The demo's normalised speech loop as a wav at ``dest`` (see :mod:`affectflow.demo.build`)."""
    demo._speech_track(resources, dest)  # noqa: SLF001 - the demo's own helper, reused as is
    return dest


def clip_row(
    *,
    clip_id: int,
    face: str,
    fps: str,
    n_frames: int,
    width: int,
    height: int,
    brightness: float = 0.0,
    gain_db: float = -11.5,
    pitch_semitones: float = 0.0,
    tempo: float = 1.0,
    video_start_s: float = 0.0,
    speech_start_s: float = 0.0,
    zoom: float = 1.0,
    audio_sample_rate: int = 16000,
    audio_channels: int = 1,
) -> pd.Series:
    """One row of the demo's clip plan (:data:`affectflow.demo.build.PROPERTY_COLUMNS`)."""
    from fractions import Fraction

    if face not in ("talker", "astronaut"):
        raise ValueError(f"face must be 'talker' or 'astronaut', not {face!r}")
    return pd.Series(
        {
            "id": int(clip_id), "split": "", "face_source": face, "fps": float(Fraction(fps)),
            "fps_rational": fps, "n_frames": int(n_frames),
            "duration_s": round(float(n_frames / Fraction(fps)), 6),
            "width": int(width), "height": int(height), "zoom": float(zoom), "brightness": float(brightness),
            "video_start_s": float(video_start_s), "has_audio": True, "speech_start_s": float(speech_start_s),
            "pitch_semitones": float(pitch_semitones), "tempo": float(tempo), "gain_db": float(gain_db),
            "audio_sample_rate": int(audio_sample_rate), "audio_channels": int(audio_channels),
        }
    )


def _run(cmd: list[str], out: Path, what: str) -> None:
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"ffmpeg failed rendering {what} (rc {proc.returncode}):\n{tail}")


def render_clip(
    row: pd.Series,
    out: str | Path,
    *,
    resources: Path,
    speech: Path,
    brightness_expr: str | None = None,
    volume_expr: str | None = None,
) -> Path:
    """Render one planned clip to ``out`` (mp4) with :func:`affectflow.demo.build.ffmpeg_command`.

    ``brightness_expr`` / ``volume_expr``: optional ffmpeg expressions of ``t`` (seconds)
    applied per frame after the demo's filters (``eq=brightness=...:eval=frame`` and
    ``volume=...:eval=frame``), for labels that change within a clip.
    """
    out = Path(out)
    with atomic_path(out) as tmp:
        cmd = demo.ffmpeg_command(row, resources, speech, tmp)
        i = cmd.index("-filter_complex") + 1
        graph = cmd[i]
        if brightness_expr is not None:
            assert graph.count("[v];") == 1, graph
            graph = graph.replace("[v];", f",eq=brightness='{brightness_expr}':eval=frame[v];")
        if volume_expr is not None:
            assert graph.endswith("[a]"), graph
            graph = graph[: -len("[a]")] + f",volume='{volume_expr}':eval=frame[a]"
        cmd[i] = graph
        _run(cmd, tmp, f"fixture clip {out.name}")
    return out


def hstack_clips(left: Path, right: Path, out: str | Path) -> Path:
    """Put two clips of equal height and length side by side (audio from ``left``)."""
    out = Path(out)
    with atomic_path(out) as tmp:
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-threads", "1",
            "-i", str(left), "-i", str(right),
            "-filter_complex", "[0:v][1:v]hstack=inputs=2,format=yuv420p[v]", "-filter_complex_threads", "1",
            "-map", "[v]", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23",
            "-threads", "1", "-c:a", "copy", "-map_metadata", "-1", "-f", "mp4", str(tmp),
        ]
        _run(cmd, tmp, f"two-person fixture clip {out.name}")
    return out
