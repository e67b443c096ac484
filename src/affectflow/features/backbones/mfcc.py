"""MFCC audio features (librosa), at their own frame rate with timestamps."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from affectflow.features.base import AudioBackbone, check_positive, empty_features
from affectflow.features.registry import BACKBONES


@BACKBONES.register("mfcc128")
class Mfcc128(AudioBackbone):
    """128 MFCC per 10 ms hop over 25 ms windows of the 16 kHz mono audio (paper 001's audio input)."""

    def __init__(self, *, n_mfcc: int = 128, hop_s: float = 0.01, win_s: float = 0.025) -> None:
        check_positive("n_mfcc", n_mfcc)
        check_positive("hop_s", hop_s)
        check_positive("win_s", win_s)
        self.params = {"n_mfcc": n_mfcc, "hop_s": hop_s, "win_s": win_s}
        self.dim = n_mfcc

    def provenance(self) -> dict:
        """No weights; the package version still decides the numbers."""
        return {"weights_sha256": "", "package_version": f"librosa {importlib.metadata.version('librosa')}"}

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, n_mfcc) float32 and frame-centre timestamps; audio shorter than a window gives T = 0."""
        return mfcc_frames(samples, sample_rate, n_mfcc=self.params["n_mfcc"], hop_s=self.params["hop_s"],
                           win_s=self.params["win_s"])


def mfcc_frames(samples: np.ndarray, sample_rate: int, *, n_mfcc: int, hop_s: float, win_s: float):
    """MFCC rows of int16 audio (uncentred windows) and the centre time of each window."""
    n_fft = int(round(win_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    if samples.size < n_fft:
        return empty_features(n_mfcc)
    import librosa  # imported here: it is slow to import and the DAG never needs it

    y = samples.astype(np.float32) / 32768.0
    mfcc = librosa.feature.mfcc(
        y=y, sr=sample_rate, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop, n_mels=max(128, n_mfcc), center=False,
    )
    features = mfcc.T.astype(np.float32)
    timestamps = (np.arange(len(features)) * hop + n_fft / 2) / sample_rate
    return features, timestamps


def stack_frames(features: np.ndarray, timestamps: np.ndarray, *, n: int, stride: int):
    """Concatenate ``n`` adjacent rows into one, every ``stride`` rows; the time is their mean.

    Rows left over at the end (fewer than ``n``) are dropped; fewer than ``n`` rows give none.
    """
    count = 0 if len(features) < n else (len(features) - n) // stride + 1
    dim = features.shape[1] * n
    if not count:
        return np.zeros((0, dim), np.float32), np.zeros(0)
    index = np.arange(count)[:, None] * stride + np.arange(n)[None, :]
    return features[index].reshape(count, dim), timestamps[index].mean(1)


@BACKBONES.register("mfcc128_stack8")
class Mfcc128Stack8(AudioBackbone):
    """Paper 001's audio input: 128 MFCC per 10 ms, 8 adjacent frames stacked to 1024-d (by default
    non-overlapping, ``stride`` 8: 80 ms a row)."""

    def __init__(self, *, n_mfcc: int = 128, n_stack: int = 8, stride: int = 8, hop_s: float = 0.01,
                 win_s: float = 0.025) -> None:
        for name, value in (("n_mfcc", n_mfcc), ("n_stack", n_stack), ("stride", stride), ("hop_s", hop_s),
                            ("win_s", win_s)):
            check_positive(name, value)
        self.params = {"n_mfcc": n_mfcc, "n_stack": n_stack, "stride": stride, "hop_s": hop_s, "win_s": win_s}
        self.dim = n_mfcc * n_stack

    def provenance(self) -> dict:
        """No weights; librosa's version decides the numbers."""
        return {"weights_sha256": "", "package_version": f"librosa {importlib.metadata.version('librosa')}"}

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, n_mfcc * n_stack) float32 and the mean centre time of each stack."""
        frames, times = mfcc_frames(samples, sample_rate, n_mfcc=self.params["n_mfcc"],
                                    hop_s=self.params["hop_s"], win_s=self.params["win_s"])
        return stack_frames(frames, times, n=self.params["n_stack"], stride=self.params["stride"])
