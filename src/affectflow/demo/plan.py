"""What the demo set is: the clip plan (ids, splits, controlled properties) and the planted labels.

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
rounded before the labels are computed, so recomputing from the properties table is exact.
The properties table holds no labels and no noise (it would leak the test labels).

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

import math
from fractions import Fraction

import numpy as np
import pandas as pd

from affectflow.config.schema import section_defaults
from affectflow.tasks import EMI_TARGETS

__all__ = [
    "BRIGHTNESS_RANGE",
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_N_CLIPS",
    "DEFAULT_SEED",
    "GAIN_DB_RANGE",
    "LABEL_NOISE_SD",
    "LABEL_TERMS",
    "MOVIE_LOOP_S",
    "PITCH_RANGE",
    "PROPERTY_COLUMNS",
    "draw_labels",
    "expected_labels",
    "normalised_properties",
    "plan_clips",
]

#: the demo set's size, duration cap and seed when none is given: the config schema's ``dataset.demo``
_DEMO_DEFAULTS = section_defaults("dataset", "demo")
DEFAULT_N_CLIPS = int(_DEMO_DEFAULTS["n_clips"])
DEFAULT_MAX_DURATION_S = float(_DEMO_DEFAULTS["max_duration_s"])
DEFAULT_SEED = int(_DEMO_DEFAULTS["seed"])

MOVIE_LOOP_S = 8.0  # movie-hello is 8.3 s; start offsets are drawn in [0, MOVIE_LOOP_S)

# --- controlled properties ----------------------------------------------------------------
FACE_SOURCES = ("talker", "astronaut", "none")
FACE_CODE = {"talker": 1.0, "astronaut": -1.0, "none": 0.0}
ZOOM_RANGE = (1.0, 1.6)
BRIGHTNESS_RANGE = (-0.25, 0.25)
PITCH_RANGE = (-4.0, 4.0)
TEMPO_RANGE = (0.8, 1.25)
GAIN_DB_RANGE = (-20.0, -3.0)
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
SPLITS = ("train", "val", "test")

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


# --- plan -------------------------------------------------------------------------------------
def _r(x: float, ndigits: int) -> float:
    """``round`` to a plain float, without negative zero."""
    return round(float(x), ndigits) + 0.0


def _split_sizes(n: int) -> tuple[int, int, int]:
    n_test = max(2, round(0.25 * n))
    n_val = max(2, round(0.20 * n))
    return n - n_test - n_val, n_val, n_test


class _Slots:
    """The clips of each split not yet given a special role, taken in a random order."""

    def __init__(self, split: list[str], rng: np.random.Generator) -> None:
        n = len(split)
        self.free = {s: list(rng.permutation([i for i in range(n) if split[i] == s])) for s in SPLITS}

    def take(self, s: str) -> int:
        """The next free clip of split ``s``."""
        return int(self.free[s].pop())


def _special_clips(split: list[str], rng: np.random.Generator, max_duration_s: float) -> tuple[list, list, list, list]:
    """``(fps, duration, face, has_audio)`` per clip with the special clips set ("" / NaN elsewhere)."""
    n = len(split)
    slots = _Slots(split, rng)
    fps = [""] * n
    duration = [math.nan] * n
    face = [""] * n
    has_audio = [True] * n

    # no-face clips: train and validation first; every 4th one goes to test
    n_noface = max(1, round(0.06 * n))
    cycle = ("train", "val", "train", "test")
    for k in range(n_noface):
        s = cycle[k % len(cycle)]
        if len(slots.free[s]) <= 2 and s != "train":  # keep face clips in small splits
            s = "train"
        face[slots.take(s)] = "none"
    # special face clips (they fit the smallest set: 6 train, 2 val, 2 test)
    i = slots.take("train")
    fps[i], duration[i] = "30", float(max_duration_s)
    i = slots.take("train")
    fps[i] = "25"
    i = slots.take("train")
    fps[i] = "60"
    i = slots.take("val")
    fps[i] = HIGH_FPS
    duration[i] = 1.0 if max_duration_s >= 10 else 0.5
    i = slots.take("val")
    fps[i] = "30000/1001"
    i = slots.take("test")
    fps[i], duration[i] = "30", MIN_DURATION_S
    i = slots.take("test")
    has_audio[i] = False
    return fps, duration, face, has_audio


def _ordinary_clips(fps: list[str], duration: list[float], rng: np.random.Generator, max_duration_s: float) -> None:
    """Fill in the frame rate (mostly 30) and gamma duration (bounded mean) of the other clips."""
    n = len(fps)
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


def _alternate_faces(split: list[str], face: list[str], rng: np.random.Generator) -> None:
    """Face clips alternate talker / astronaut within each split, from a random start."""
    n = len(split)
    for s in SPLITS:
        idx = [i for i in range(n) if split[i] == s and face[i] != "none"]
        idx = [idx[j] for j in rng.permutation(len(idx))]
        first = int(rng.integers(2))
        for k, i in enumerate(idx):
            face[i] = ("talker", "astronaut")[(k + first) % 2]


def _property_row(clip_id: int, split: str, face: str, fps: str, duration: float, has_audio: bool,
                  rng: np.random.Generator, max_duration_s: float) -> dict:
    """One clip's row: its frame count from ``duration`` and the other properties drawn from ``rng``."""
    fr = Fraction(fps)
    lo = math.ceil(Fraction(MIN_DURATION_S) * fr)
    hi = math.floor(Fraction(max_duration_s) * fr)
    n_frames = min(max(round(duration * fr), lo), hi)
    w, h = SIZES[rng.choice(len(SIZES), p=SIZE_P)]
    row = {
        "id": int(clip_id),
        "split": split,
        "face_source": face,
        "fps": float(fr),
        "fps_rational": fps,
        "n_frames": int(n_frames),
        "duration_s": round(float(n_frames / fr), 6),
        "width": int(w),
        "height": int(h),
        "zoom": _r(rng.uniform(*ZOOM_RANGE), 3),
        "brightness": _r(rng.uniform(*BRIGHTNESS_RANGE), 3),
        "video_start_s": _r(rng.uniform(0, MOVIE_LOOP_S), 2),
        "has_audio": bool(has_audio),
        "speech_start_s": _r(rng.uniform(0, 20.0), 2),
        "pitch_semitones": _r(rng.uniform(*PITCH_RANGE), 2),
        "tempo": _r(np.exp2(rng.uniform(*np.log2(TEMPO_RANGE))), 3),
        "gain_db": _r(rng.uniform(*GAIN_DB_RANGE), 2),
        "audio_sample_rate": int(rng.choice(AUDIO_RATES)),
        "audio_channels": int(rng.integers(1, 3)),
    }
    if not has_audio:
        row.update(
            speech_start_s=0.0,
            pitch_semitones=0.0,
            tempo=1.0,
            gain_db=sum(GAIN_DB_RANGE) / 2,
            audio_sample_rate=0,
            audio_channels=0,
        )
    return row


def plan_clips(n_clips: int = DEFAULT_N_CLIPS, max_duration_s: float = DEFAULT_MAX_DURATION_S,
               seed: int = DEFAULT_SEED) -> pd.DataFrame:
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
    # The draws from ``rng`` happen in this order; changing it changes every demo set.
    fps, duration, face, has_audio = _special_clips(split, rng, max_duration_s)
    _ordinary_clips(fps, duration, rng, max_duration_s)
    _alternate_faces(split, face, rng)
    ids = rng.permutation(n)
    rows = [
        _property_row(ids[i], split[i], face[i], fps[i], duration[i], has_audio[i], rng, max_duration_s)
        for i in range(n)
    ]
    props = pd.DataFrame(rows, columns=list(PROPERTY_COLUMNS))
    return props.sort_values("id", kind="stable").reset_index(drop=True)
