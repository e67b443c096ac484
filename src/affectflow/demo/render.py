"""Rendering the demo set: ffmpeg commands per planned clip, and the data set on disk.

:func:`build_demo_dataset` renders ``n_clips`` short mp4 clips from the source media committed
in ``resources/demo/`` (see ``resources/demo/LICENSES.md``) and writes them in the layout of the
Hume-Vidmimic2 emotional-mimicry (EMI) data set::

    out_root/raw/00000.mp4 ...           every clip (train, validation and test)
    out_root/train_split.csv             Filename,Admiration,...,Joy  (train ids only)
    out_root/valid_split.csv             same header                  (validation ids only)
    ground_truth_csv                     same header, the test ids    (read by evaluation only)
    properties_tsv                       one row per clip: id, split and every controlled property

Test ids appear only as files under ``raw/``, as in the real data set. The clips, their
properties and labels are planned in :mod:`affectflow.demo.plan`.

Rendering
---------
Video (H.264, yuv420p, 4:3, 320x240 / 288x216 / 256x192) comes from one of three sources
(``face_source``):

* ``talker``: the webcam inset of ``movie-hello.mp4`` (a real talking head, crop 248x186 at
  x=116, y=85 of the 1280x720 frame), starting at ``video_start_s`` and looping;
* ``astronaut``: the still ``astronaut.png`` (crop 320x240 around the head) with a slow
  sinusoidal pan, so consecutive frames differ; ``video_start_s`` is the phase of the pan;
* ``none``: the terminal window of ``movie-hello.mp4`` (crop 640x480 at x=410, y=135), which
  holds no face in any frame.

Then a ``1/zoom`` window of the picture is cropped (centred; for the talker, a quarter of the
vertical cut is taken above and three quarters below, which keeps the face in view) and scaled
back to ``width x height``,
``eq=brightness=<brightness>`` is applied and the ``fps`` filter sets the frame rate;
exactly ``n_frames`` frames are written and ``duration_s = n_frames / fps``.

Audio (AAC, ``audio_sample_rate`` Hz, ``audio_channels`` channels) is LibriVox read speech: the
five utterances, each normalised to -20 dBFS RMS, concatenated with 0.2 s gaps and looped,
starting at ``speech_start_s``. ``asetrate`` shifts the pitch by ``pitch_semitones`` (and the
speed by the same ratio), ``aresample`` goes to the output rate, ``atempo`` corrects the speed
so the net speaking rate is ``tempo`` times the original, ``volume`` applies ``gain_db``, a
fixed pink-noise floor (amplitude 0.01, about -40 dBFS) is mixed in and the stream is cut to
``duration_s``. The pipeline peak-normalises audio, which erases absolute loudness; against the
fixed floor, ``gain_db`` stays observable as the speech-to-noise ratio. Exactly one clip has
``has_audio = False``: it has no audio stream at all, and its audio properties are set to the
neutral values (pitch 0, tempo 1, gain -11.5 dB, rate and channels 0) so its labels carry no
audio signal.
"""

from __future__ import annotations

import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.demo.plan import DEFAULT_MAX_DURATION_S, DEFAULT_N_CLIPS, DEFAULT_SEED, draw_labels, plan_clips
from affectflow.runtime.atomic import atomic_path
from affectflow.runtime.ffmpeg import ffmpeg_exe
from affectflow.tasks import EMI_HEADER, emi_media_name

__all__ = [
    "ASTRONAUT_NAME",
    "MOVIE_NAME",
    "SPEECH_DIR",
    "build_demo_dataset",
    "ffmpeg_command",
    "write_labels",
    "write_speech_loop",
]

# --- source media -------------------------------------------------------------------------
MOVIE_NAME = "movie-hello.mp4"
ASTRONAUT_NAME = "astronaut.png"
SPEECH_DIR = "speech"
SPEECH_RATE = 16000
SPEECH_RMS_DBFS = -20.0
SPEECH_GAP_S = 0.2

#: ffmpeg crop (w:h:x:y) of movie-hello's webcam inset (the talking head).
TALKER_CROP = "crop=248:186:116:85"
#: the talker's face sits in the upper part of the inset: zoom crops keep 1/4 of the cut above
TALKER_ZOOM_Y_ANCHOR = 0.25
#: ffmpeg crop of movie-hello's terminal window: no face in any frame.
NOFACE_CROP = "crop=640:480:410:135"
#: astronaut.png: a 320x240 window around the head that pans slowly (x 44..92, y 0..10).
ASTRONAUT_PAN_X = "68+24*sin(2*PI*(t+{t0})/7)"
ASTRONAUT_PAN_Y = "5+5*sin(2*PI*(t+{t0})/5)"
NOISE_FLOOR_AMPLITUDE = 0.01  # pink noise at about -40 dBFS under every clip's speech

WORKERS = 2  # parallel ffmpeg processes, each with -threads 1


def write_speech_loop(resources_dir: Path, dest: Path) -> float:
    """Write the normalised, concatenated speech loop to ``dest``; return its length in s."""
    import soundfile as sf

    wavs = sorted((resources_dir / SPEECH_DIR).glob("*.wav"))
    if not wavs:
        raise FileNotFoundError(f"no speech wavs under {resources_dir / SPEECH_DIR}")
    gap = np.zeros(int(SPEECH_GAP_S * SPEECH_RATE))
    parts = []
    for wav in wavs:
        x, sr = sf.read(wav, dtype="float64", always_2d=True)
        if sr != SPEECH_RATE:
            raise ValueError(f"{wav}: expected {SPEECH_RATE} Hz, got {sr}")
        x = x.mean(axis=1)
        rms = float(np.sqrt(np.mean(x**2)))
        if rms > 0:
            x = x * (10 ** (SPEECH_RMS_DBFS / 20) / rms)
        parts += [np.clip(x, -0.99, 0.99), gap]
    track = np.concatenate(parts)
    sf.write(dest, track, SPEECH_RATE, subtype="PCM_16")
    return len(track) / SPEECH_RATE


def _video_args(row: pd.Series, resources_dir: Path) -> tuple[list[str], str]:
    """ffmpeg input arguments and filter chain of the video stream of one clip."""
    src = row["face_source"]
    if src == "astronaut":
        t0 = f"{float(row['video_start_s']):.2f}"
        inputs = [
            "-loop", "1", "-framerate", str(row["fps_rational"]),
            "-i", str(resources_dir / ASTRONAUT_NAME),
        ]
        first = (
            f"crop=320:240:'{ASTRONAUT_PAN_X.format(t0=t0)}':'{ASTRONAUT_PAN_Y.format(t0=t0)}'"
        )
    elif src in ("talker", "none"):
        inputs = [
            "-stream_loop", "-1", "-ss", f"{float(row['video_start_s']):.2f}",
            "-i", str(resources_dir / MOVIE_NAME),
        ]
        first = TALKER_CROP if src == "talker" else NOFACE_CROP
    else:
        raise ValueError(f"unknown face_source {src!r}")
    z = float(row["zoom"])
    y_anchor = TALKER_ZOOM_Y_ANCHOR if src == "talker" else 0.5
    chain = ",".join(
        [
            first,
            f"crop=iw/{z:.3f}:ih/{z:.3f}:(in_w-out_w)/2:(in_h-out_h)*{y_anchor}",
            f"scale={int(row['width'])}:{int(row['height'])}:flags=bicubic",
            "setsar=1",
            f"eq=brightness={float(row['brightness']):.3f}",
            f"fps={row['fps_rational']}",
            "format=yuv420p",
        ]
    )
    return inputs, chain


def _audio_args(row: pd.Series, speech: Path) -> tuple[list[str], str]:
    """ffmpeg input arguments and filter chain of the audio stream of one clip."""
    ratio = 2.0 ** (float(row["pitch_semitones"]) / 12.0)
    shifted_rate = round(SPEECH_RATE * ratio)
    speed = shifted_rate / SPEECH_RATE  # asetrate speeds up by this much ...
    sr = int(row["audio_sample_rate"])
    n_samples = round(float(Fraction(int(row["n_frames"])) / Fraction(row["fps_rational"])) * sr)
    layout = "mono" if int(row["audio_channels"]) == 1 else "stereo"
    inputs = ["-stream_loop", "-1", "-ss", f"{float(row['speech_start_s']):.2f}", "-i", str(speech)]
    # The pipeline peak-normalises audio (Yu et al. 2024 (000)), which erases absolute loudness;
    # a fixed pink-noise floor keeps ``gain_db`` observable as the speech-to-noise ratio.
    chain = ",".join(
        [
            f"asetrate={shifted_rate}",
            f"aresample={sr}",
            f"atempo={float(row['tempo']) / speed:.6f}",  # ... and atempo sets the net rate
            f"volume={float(row['gain_db']):.2f}dB",
        ]
    ) + (
        f"[speech];anoisesrc=color=pink:amplitude={NOISE_FLOOR_AMPLITUDE}:sample_rate={sr}"
        f":seed={int(row['id']) + 1}[floor];[speech][floor]amix=inputs=2:duration=first:normalize=0,"
        + ",".join(
            [
                f"atrim=end_sample={n_samples}",
                "asetpts=N/SR/TB",
                f"aformat=sample_fmts=fltp:channel_layouts={layout}",
            ]
        )
    )
    return inputs, chain


def ffmpeg_command(row: pd.Series, resources_dir: Path, speech: Path, out: Path) -> list[str]:
    """The ffmpeg argument list that renders one planned clip to ``out`` (mp4)."""
    v_in, v_chain = _video_args(row, resources_dir)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-threads", "1"]
    cmd += v_in
    graph = f"[0:v]{v_chain}[v]"
    maps = ["-map", "[v]"]
    if bool(row["has_audio"]):
        a_in, a_chain = _audio_args(row, speech)
        cmd += ["-threads", "1"] + a_in
        graph += f";[1:a]{a_chain}[a]"
        maps += ["-map", "[a]"]
    cmd += ["-filter_complex", graph, "-filter_complex_threads", "1", *maps]
    cmd += [
        "-frames:v", str(int(row["n_frames"])),
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-threads", "1",
    ]
    if bool(row["has_audio"]):
        cmd += [
            "-c:a", "aac", "-b:a", "64k",
            "-ar", str(int(row["audio_sample_rate"])), "-ac", str(int(row["audio_channels"])),
        ]
    else:
        cmd += ["-an"]
    cmd += ["-sn", "-dn", "-map_metadata", "-1", "-f", "mp4", str(out)]
    return cmd


def _render(row: pd.Series, resources_dir: Path, speech: Path, raw_dir: Path) -> None:
    """Render one planned clip to ``raw_dir``; ffmpeg's error names the clip."""
    name = emi_media_name(int(row["id"]))
    with atomic_path(raw_dir / name) as tmp:
        cmd = ffmpeg_command(row, resources_dir, speech, tmp)
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(
                f"ffmpeg failed rendering demo clip {name} (id {int(row['id'])}, "
                f"{row['face_source']}, {row['fps_rational']} fps, rc {proc.returncode}):\n{tail}"
            )


def _render_all(props: pd.DataFrame, resources_dir: Path, raw_dir: Path) -> None:
    """Render every planned clip, :data:`WORKERS` at a time; the first failure stops the rest."""
    with tempfile.TemporaryDirectory(prefix="affectflow-demo-") as tmpdir:
        speech = Path(tmpdir) / "speech.wav"
        write_speech_loop(resources_dir, speech)
        # longest clips first so the two workers finish together
        order = props.assign(_cost=props["n_frames"]).sort_values("_cost", ascending=False)
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [
                pool.submit(_render, row, resources_dir, speech, raw_dir)
                for _, row in order.iterrows()
            ]
            try:
                for fut in futures:
                    fut.result()
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise


def write_labels(labels: pd.DataFrame, path: Path) -> None:
    """Write labels (``Filename`` + the EMI targets) as an organisers' split csv, atomically."""
    with atomic_path(path) as tmp:
        labels.to_csv(tmp, index=False, header=list(EMI_HEADER), float_format="%.6f")


def build_demo_dataset(
    resources_dir,
    out_root,
    ground_truth_csv,
    properties_tsv,
    *,
    n_clips: int = DEFAULT_N_CLIPS,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Render the demo data set in the Hume-Vidmimic2 layout; return the properties table.

    See the module docstrings of :mod:`affectflow.demo.render` (layout, rendering) and
    :mod:`affectflow.demo.plan` (the clip plan and the planted label formulas).
    Raises ``ValueError`` for ``n_clips < 10`` and ``RuntimeError`` (naming the clip and
    quoting ffmpeg's stderr) when a clip fails to render.
    """
    resources_dir = Path(resources_dir)
    out_root = Path(out_root)
    props = plan_clips(n_clips, max_duration_s, seed)
    for name in (MOVIE_NAME, ASTRONAUT_NAME):
        if not (resources_dir / name).is_file():
            raise FileNotFoundError(f"demo source {resources_dir / name} is missing")
    labels = draw_labels(props, seed)

    raw_dir = out_root / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    _render_all(props, resources_dir, raw_dir)

    split = props["split"].to_numpy()
    write_labels(labels[split == "train"], out_root / "train_split.csv")
    write_labels(labels[split == "val"], out_root / "valid_split.csv")
    write_labels(labels[split == "test"], Path(ground_truth_csv))
    with atomic_path(properties_tsv) as tmp:
        props.to_csv(tmp, sep="\t", index=False)
    return props
