"""Demo data set: small real media laid out exactly like Hume-Vidmimic2, with planted labels.

:func:`build_demo_dataset` renders ``n_clips`` short mp4 clips from the source media committed
in ``resources/demo/`` (see ``resources/demo/LICENSES.md``) and writes them in the layout of the
Hume-Vidmimic2 emotional-mimicry (EMI) data set::

    out_root/raw/00000.mp4 ...           every clip (train, validation and test)
    out_root/train_split.csv             Filename,Admiration,...,Joy  (train ids only)
    out_root/valid_split.csv             same header                  (validation ids only)
    ground_truth_csv                     same header, the test ids    (read by evaluation only)
    properties_tsv                       one row per clip: id, split and every controlled property

Test ids appear only as files under ``raw/``, as in the real data set.

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
fixed floor, ``gain_db`` stays observable as the speech-to-noise ratio. Exactly one clip has ``has_audio = False``: it has no
audio stream at all, and its audio properties are set to the neutral values
(pitch 0, tempo 1, gain -11.5 dB, rate and channels 0) so its labels carry no audio signal.

Planted labels
--------------
Each controlled property ``p`` is normalised to ``[-1, 1]`` over its range:

* ``gain  = (gain_db + 11.5) / 8.5``                  gain_db in [-20, -3]
* ``pitch = pitch_semitones / 4``                     pitch in [-4, 4] semitones
* ``tempo = log2(tempo) / log2(1.25)``                tempo in [0.8, 1.25] (= [1/1.25, 1.25]:
  linear on the log scale, where the range is symmetric and 1.0 maps to 0)
* ``bright = brightness / 0.25``                      brightness in [-0.25, 0.25]
* ``face  = +1 talker, -1 astronaut, 0 none``
* (``zoom`` in [1.0, 1.6] is a nuisance property: it enters no label.)

and every target is ``clip(mean + e, 0, 1)`` with independent noise ``e ~ N(0, 0.04**2)``,
itself clipped to +-3 sd (+-0.12), so ``|label - mean| <= 0.12`` always holds (up to the
6-decimal rounding of the written labels):

=================  ==========================================  ===========
target             mean (noise-free formula)                   driven by
=================  ==========================================  ===========
Admiration         0.5 + 0.35 * gain                           audio
Amusement          0.5 + 0.35 * pitch                          audio
Determination      0.5 + 0.30 * tempo                          audio
Empathic Pain      0.5 + 0.35 * bright                         video
Excitement         0.5 + 0.30 * face                           video
Joy                0.5 + 0.20 * pitch + 0.20 * bright          audio + video
=================  ==========================================  ===========

:func:`expected_labels` computes the noise-free means from a properties table. Properties are
rounded before the labels are computed, so recomputing from ``properties_tsv`` is exact.
``properties_tsv`` holds no labels and no noise (it would leak the test labels).

Clip plan
---------
Splits (``split`` column: ``train``, ``val``, ``test``, as in the manifest):
``max(2, round(0.25 n))`` test, ``max(2, round(0.20 n))`` validation, the rest train.
Special clips that exist for every ``n_clips >= 10``: one each at 25, 30000/1001, 60 and
500 fps (the 500 fps one 1.0 s long, 0.5 s when ``max_duration_s < 10``), one clip of
``max_duration_s`` and one of 0.5 s, ``max(1, round(0.06 n))`` clips with no face (train and
validation first, the 4th in test), and one clip without audio (in test). The remaining clips are
mostly 30 fps with gamma-distributed durations (mean about 3.8 s for the default 20 s cap).
Face clips alternate talker / astronaut within each split. Ids are a random permutation of
``range(n_clips)``, so the splits interleave. Everything is drawn from
``numpy.random.default_rng(seed)``: a seed gives the same labels and properties (the mp4 bytes
may differ between ffmpeg builds).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.runtime.atomic import atomic_path
from affectflow.runtime.ffmpeg import ffmpeg_exe
from affectflow.tasks import EMI_HEADER, EMI_TARGETS, emi_media_name

# --- source media -------------------------------------------------------------------------
MOVIE_NAME = "movie-hello.mp4"
ASTRONAUT_NAME = "astronaut.png"
SPEECH_DIR = "speech"
SPEECH_RATE = 16000
SPEECH_RMS_DBFS = -20.0
SPEECH_GAP_S = 0.2
MOVIE_LOOP_S = 8.0  # movie-hello is 8.3 s; start offsets are drawn in [0, MOVIE_LOOP_S)

#: ffmpeg crop (w:h:x:y) of movie-hello's webcam inset (the talking head).
TALKER_CROP = "crop=248:186:116:85"
#: the talker's face sits in the upper part of the inset: zoom crops keep 1/4 of the cut above
TALKER_ZOOM_Y_ANCHOR = 0.25
#: ffmpeg crop of movie-hello's terminal window: no face in any frame.
NOFACE_CROP = "crop=640:480:410:135"
#: astronaut.png: a 320x240 window around the head that pans slowly (x 44..92, y 0..10).
ASTRONAUT_PAN_X = "68+24*sin(2*PI*(t+{t0})/7)"
ASTRONAUT_PAN_Y = "5+5*sin(2*PI*(t+{t0})/5)"

# --- controlled properties ----------------------------------------------------------------
FACE_SOURCES = ("talker", "astronaut", "none")
FACE_CODE = {"talker": 1.0, "astronaut": -1.0, "none": 0.0}
ZOOM_RANGE = (1.0, 1.6)
BRIGHTNESS_RANGE = (-0.25, 0.25)
PITCH_RANGE = (-4.0, 4.0)
TEMPO_RANGE = (0.8, 1.25)
GAIN_DB_RANGE = (-20.0, -3.0)
NOISE_FLOOR_AMPLITUDE = 0.01  # pink noise at about -40 dBFS under every clip's speech
SIZES = ((320, 240), (288, 216), (256, 192))
SIZE_P = (0.5, 0.2, 0.3)
AUDIO_RATES = (44100, 48000)
#: frame rates of the ordinary clips, and their probabilities ("mostly 30").
COMMON_FPS = ("30", "25", "30000/1001", "60")
COMMON_FPS_P = (0.74, 0.1, 0.12, 0.04)
HIGH_FPS = "500"
MIN_DURATION_S = 0.5
LABEL_NOISE_SD = 0.04
LABEL_NOISE_CLIP = 3.0  # noise is clipped to +-3 sd

#: noise-free label formulas: target -> {normalised property: coefficient}
LABEL_TERMS: dict[str, dict[str, float]] = {
    "Admiration": {"gain": 0.35},
    "Amusement": {"pitch": 0.35},
    "Determination": {"tempo": 0.30},
    "Empathic Pain": {"bright": 0.35},
    "Excitement": {"face": 0.30},
    "Joy": {"pitch": 0.20, "bright": 0.20},
}
assert tuple(LABEL_TERMS) == EMI_TARGETS

PROPERTY_COLUMNS = (
    "id",
    "split",
    "face_source",
    "fps",
    "fps_rational",
    "n_frames",
    "duration_s",
    "width",
    "height",
    "zoom",
    "brightness",
    "video_start_s",
    "has_audio",
    "speech_start_s",
    "pitch_semitones",
    "tempo",
    "gain_db",
    "audio_sample_rate",
    "audio_channels",
)

WORKERS = 2  # parallel ffmpeg processes, each with -threads 1


# --- labels ---------------------------------------------------------------------------------
def normalised_properties(props: pd.DataFrame) -> pd.DataFrame:
    """The label-driving properties of ``props`` mapped to [-1, 1] (see the module docstring)."""
    lo, hi = GAIN_DB_RANGE
    return pd.DataFrame(
        {
            "gain": (props["gain_db"].astype(float) - (lo + hi) / 2) / ((hi - lo) / 2),
            "pitch": props["pitch_semitones"].astype(float) / PITCH_RANGE[1],
            "tempo": np.log2(props["tempo"].astype(float)) / math.log2(TEMPO_RANGE[1]),
            "bright": props["brightness"].astype(float) / BRIGHTNESS_RANGE[1],
            "face": props["face_source"].map(FACE_CODE).astype(float),
        },
        index=props.index,
    )


def expected_labels(props: pd.DataFrame) -> pd.DataFrame:
    """Noise-free planted labels (columns ``EMI_TARGETS``) for a properties table."""
    z = normalised_properties(props)
    out = pd.DataFrame(index=props.index)
    for target, terms in LABEL_TERMS.items():
        out[target] = 0.5 + sum(coef * z[name] for name, coef in terms.items())
    return out


# --- plan -------------------------------------------------------------------------------------
def _r(x: float, ndigits: int) -> float:
    """``round`` to a plain float, without negative zero."""
    return round(float(x), ndigits) + 0.0


def _split_sizes(n: int) -> tuple[int, int, int]:
    n_test = max(2, round(0.25 * n))
    n_val = max(2, round(0.20 * n))
    return n - n_test - n_val, n_val, n_test


def plan_clips(n_clips: int = 72, max_duration_s: float = 20.0, seed: int = 0) -> pd.DataFrame:
    """The clip plan: one row per clip with id, split and every controlled property.

    Deterministic for a given ``(n_clips, max_duration_s, seed)``; rows sorted by id.
    """
    if int(n_clips) != n_clips or n_clips < 10:
        raise ValueError(f"n_clips must be an integer >= 10, got {n_clips!r}")
    if not max_duration_s >= 1.0:
        raise ValueError(f"max_duration_s must be >= 1.0, got {max_duration_s!r}")
    n = int(n_clips)
    rng = np.random.default_rng(seed)
    n_train, n_val, n_test = _split_sizes(n)
    split = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    free = {
        s: list(rng.permutation([i for i in range(n) if split[i] == s]))
        for s in ("train", "val", "test")
    }

    def take(s: str) -> int:
        return int(free[s].pop())

    fps = [""] * n
    duration = [math.nan] * n
    face = [""] * n
    has_audio = [True] * n

    # no-face clips: train and validation first; every 4th one goes to test
    n_noface = max(1, round(0.06 * n))
    cycle = ("train", "val", "train", "test")
    for k in range(n_noface):
        s = cycle[k % len(cycle)]
        if len(free[s]) <= 2 and s != "train":  # keep face clips in small splits
            s = "train"
        i = take(s)
        face[i] = "none"
    # special face clips (they fit the smallest set: 6 train, 2 val, 2 test)
    i = take("train")
    fps[i], duration[i] = "30", float(max_duration_s)
    i = take("train")
    fps[i] = "25"
    i = take("train")
    fps[i] = "60"
    i = take("val")
    fps[i] = HIGH_FPS
    duration[i] = 1.0 if max_duration_s >= 10 else 0.5
    i = take("val")
    fps[i] = "30000/1001"
    i = take("test")
    fps[i], duration[i] = "30", MIN_DURATION_S
    i = take("test")
    has_audio[i] = False

    # ordinary clips: frame rate mostly 30, gamma durations with a bounded mean
    for i in range(n):
        if not fps[i]:
            fps[i] = str(rng.choice(COMMON_FPS, p=COMMON_FPS_P))
    todo = [i for i in range(n) if math.isnan(duration[i])]
    target_mean = min(3.8, 0.45 * max_duration_s)
    raw = rng.gamma(2.0, 1.0, size=len(todo))
    d = raw.copy()
    for _ in range(20):  # rescale towards the target mean, clipping to the allowed range
        d = np.clip(d * target_mean / max(d.mean(), 1e-9), MIN_DURATION_S, max_duration_s)
    for i, v in zip(todo, d, strict=True):
        duration[i] = float(v)

    # face clips alternate talker / astronaut within each split
    for s in ("train", "val", "test"):
        idx = [i for i in range(n) if split[i] == s and face[i] != "none"]
        idx = [idx[j] for j in rng.permutation(len(idx))]
        first = int(rng.integers(2))
        for k, i in enumerate(idx):
            face[i] = ("talker", "astronaut")[(k + first) % 2]

    rows = []
    ids = rng.permutation(n)
    for i in range(n):
        fr = Fraction(fps[i])
        lo = math.ceil(Fraction(MIN_DURATION_S) * fr)
        hi = math.floor(Fraction(max_duration_s) * fr)
        n_frames = min(max(round(duration[i] * fr), lo), hi)
        w, h = SIZES[rng.choice(len(SIZES), p=SIZE_P)]
        row = {
            "id": int(ids[i]),
            "split": split[i],
            "face_source": face[i],
            "fps": float(fr),
            "fps_rational": fps[i],
            "n_frames": int(n_frames),
            "duration_s": round(float(n_frames / fr), 6),
            "width": int(w),
            "height": int(h),
            "zoom": _r(rng.uniform(*ZOOM_RANGE), 3),
            "brightness": _r(rng.uniform(*BRIGHTNESS_RANGE), 3),
            "video_start_s": _r(rng.uniform(0, MOVIE_LOOP_S), 2),
            "has_audio": bool(has_audio[i]),
            "speech_start_s": _r(rng.uniform(0, 20.0), 2),
            "pitch_semitones": _r(rng.uniform(*PITCH_RANGE), 2),
            "tempo": _r(np.exp2(rng.uniform(*np.log2(TEMPO_RANGE))), 3),
            "gain_db": _r(rng.uniform(*GAIN_DB_RANGE), 2),
            "audio_sample_rate": int(rng.choice(AUDIO_RATES)),
            "audio_channels": int(rng.integers(1, 3)),
        }
        if not has_audio[i]:
            row.update(
                speech_start_s=0.0,
                pitch_semitones=0.0,
                tempo=1.0,
                gain_db=sum(GAIN_DB_RANGE) / 2,
                audio_sample_rate=0,
                audio_channels=0,
            )
        rows.append(row)
    props = pd.DataFrame(rows, columns=list(PROPERTY_COLUMNS))
    return props.sort_values("id", kind="stable").reset_index(drop=True)


def draw_labels(props: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Planted labels: formula + N(0, 0.04) noise (noise clipped to +-3 sd), clipped to [0, 1].

    Columns ``Filename`` and the six targets (rounded to 6 decimals), rows in id order.

    The noise comes from its own generator (``seed`` and a fixed salt).
    """
    rng = np.random.default_rng([int(seed), 0x1ABE1])
    mean = expected_labels(props)
    noise = rng.normal(0.0, LABEL_NOISE_SD, size=mean.shape)
    noise = noise.clip(-LABEL_NOISE_CLIP * LABEL_NOISE_SD, LABEL_NOISE_CLIP * LABEL_NOISE_SD)
    labels = (mean + noise).clip(0.0, 1.0).round(6)
    labels.insert(0, "Filename", props["id"].astype(int).to_numpy())
    return labels


# --- rendering ------------------------------------------------------------------------------
def _speech_track(resources_dir: Path, dest: Path) -> float:
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
    # The pipeline peak-normalises audio (paper 000), which erases absolute loudness; a fixed
    # pink-noise floor keeps ``gain_db`` observable as the speech-to-noise ratio.
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


def _write_labels(labels: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        labels.to_csv(tmp, index=False, header=list(EMI_HEADER), float_format="%.6f")


def build_demo_dataset(
    resources_dir,
    out_root,
    ground_truth_csv,
    properties_tsv,
    *,
    n_clips: int = 72,
    max_duration_s: float = 20.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Render the demo data set in the Hume-Vidmimic2 layout; return the properties table.

    See the module docstring for the layout, the rendering and the planted label formulas.
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
    with tempfile.TemporaryDirectory(prefix="affectflow-demo-") as tmpdir:
        speech = Path(tmpdir) / "speech.wav"
        _speech_track(resources_dir, speech)
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

    split = props["split"].to_numpy()
    _write_labels(labels[split == "train"], out_root / "train_split.csv")
    _write_labels(labels[split == "val"], out_root / "valid_split.csv")
    _write_labels(labels[split == "test"], Path(ground_truth_csv))
    with atomic_path(properties_tsv) as tmp:
        props.to_csv(tmp, sep="\t", index=False)
    return props


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m affectflow.demo.build RESOURCES OUT_ROOT GROUND_TRUTH PROPERTIES``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("resources_dir")
    ap.add_argument("out_root")
    ap.add_argument("ground_truth_csv")
    ap.add_argument("properties_tsv")
    ap.add_argument("--n-clips", type=int, default=72)
    ap.add_argument("--max-duration-s", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    build_demo_dataset(
        a.resources_dir, a.out_root, a.ground_truth_csv, a.properties_tsv,
        n_clips=a.n_clips, max_duration_s=a.max_duration_s, seed=a.seed,
    )


if __name__ == "__main__":
    main()
