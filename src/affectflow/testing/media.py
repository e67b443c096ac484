"""Tiny real clips for the data set fixtures, rendered with the demo's ffmpeg recipe.

Every clip comes from :func:`affectflow.demo.render.ffmpeg_command` (a real face from the demo
sources, LibriVox speech over a pink-noise floor, H.264 + AAC), so the face detectors find a
face and audio features are non-empty. :func:`render_clip` can add a time-varying brightness
and loudness on top of the demo's constant ones, which is what the per-frame fixtures plant
their labels on.
"""

from __future__ import annotations

import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.demo.plan import BRIGHTNESS_RANGE, GAIN_DB_RANGE, MOVIE_LOOP_S, PITCH_RANGE
from affectflow.demo.render import ASTRONAUT_NAME, MOVIE_NAME, SPEECH_DIR, ffmpeg_command, write_speech_loop
from affectflow.runtime.atomic import atomic_path
from affectflow.runtime.ffmpeg import ffmpeg_exe

__all__ = [
    "DEFAULT_RESOURCES",
    "HEIGHT",
    "WIDTH",
    "clip_row",
    "hstack_clips",
    "plan_rows",
    "render_clip",
    "render_clips",
    "resources_dir",
    "speech_track",
]

#: the demo sources in a source checkout (``resources/demo`` next to ``src/``)
DEFAULT_RESOURCES = Path(__file__).resolve().parents[3] / "resources" / "demo"
#: picture size of one person's clip (a two-person Aff-Wild2 video is two of them side by side)
WIDTH, HEIGHT = 160, 120
WORKERS = 2  # parallel ffmpeg processes
_FPS_CYCLE = ("30", "25", "30")


def resources_dir(path: str | Path | None = None) -> Path:
    """The demo source folder: ``path`` or :data:`DEFAULT_RESOURCES`; fails if it is missing."""
    folder = Path(path) if path is not None else DEFAULT_RESOURCES
    for name in (MOVIE_NAME, ASTRONAUT_NAME, SPEECH_DIR):
        if not (folder / name).exists():
            raise FileNotFoundError(
                f"demo source {folder / name} is missing (pass resources= the resources/demo folder of a checkout)"
            )
    return folder


def speech_track(resources: Path, dest: Path) -> Path:
    """The demo's normalised speech loop as a wav at ``dest`` (see :mod:`affectflow.demo.render`)."""
    write_speech_loop(resources, dest)
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
    """One row of the demo's clip plan (:data:`affectflow.demo.plan.PROPERTY_COLUMNS`)."""
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
    """Render one planned clip to ``out`` (mp4) with :func:`affectflow.demo.render.ffmpeg_command`.

    ``brightness_expr`` / ``volume_expr``: optional ffmpeg expressions of ``t`` (seconds)
    applied per frame after the demo's filters (``eq=brightness=...:eval=frame`` and
    ``volume=...:eval=frame``), for labels that change within a clip.
    """
    out = Path(out)
    with atomic_path(out) as tmp:
        cmd = ffmpeg_command(row, resources, speech, tmp)
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


def plan_rows(n: int, rng: np.random.Generator, *, min_s: float = 1.0, max_s: float = 2.5) -> list[pd.Series]:
    """Clip plans (demo property rows) with drawn properties; ``id`` is the row index."""
    rows = []
    for i in range(n):
        fps = _FPS_CYCLE[i % len(_FPS_CYCLE)]
        n_frames = int(round(rng.uniform(min_s, max_s) * float(fps)))
        rows.append(
            clip_row(
                clip_id=i, face=("talker", "astronaut")[i % 2], fps=fps, n_frames=n_frames,
                width=WIDTH, height=HEIGHT,
                brightness=round(float(rng.uniform(*BRIGHTNESS_RANGE)), 3) + 0.0,
                gain_db=round(float(rng.uniform(*GAIN_DB_RANGE)), 2),
                pitch_semitones=round(float(rng.uniform(*PITCH_RANGE)), 2) + 0.0,
                video_start_s=round(float(rng.uniform(0, MOVIE_LOOP_S)), 2),
                speech_start_s=round(float(rng.uniform(0, 20.0)), 2),
                audio_sample_rate=44100, audio_channels=1,
            )
        )
    return rows


def render_clips(jobs: list[tuple], resources: str | Path | None) -> None:
    """Render ``(row, out, brightness_expr, volume_expr)`` jobs (see :func:`render_clip`) two at a time."""
    res = resources_dir(resources)
    with tempfile.TemporaryDirectory(prefix="affectflow-fixture-") as tmp:
        speech = speech_track(res, Path(tmp) / "speech.wav")
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [
                pool.submit(render_clip, row, out, resources=res, speech=speech, brightness_expr=b, volume_expr=v)
                for row, out, b, v in jobs
            ]
            for fut in futures:
                fut.result()
