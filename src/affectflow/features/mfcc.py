"""MFCC audio features (librosa), at their own frame rate with timestamps."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from affectflow.features.registry import BACKBONES


@BACKBONES.register("mfcc128")
class Mfcc128:
    """128 MFCC per 10 ms hop over 25 ms windows of the 16 kHz mono audio (paper 001's audio input)."""

    modality = "audio"

    def __init__(self, *, n_mfcc: int = 128, hop_s: float = 0.01, win_s: float = 0.025) -> None:
        self.params = {"n_mfcc": n_mfcc, "hop_s": hop_s, "win_s": win_s}
        self.dim = n_mfcc

    def provenance(self) -> dict:
        """No weights; the package version still decides the numbers."""
        return {"weights_sha256": "", "package_version": f"librosa {importlib.metadata.version('librosa')}"}

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, n_mfcc) float32 and frame-centre timestamps; audio shorter than a window gives T = 0."""
        n_fft = int(round(self.params["win_s"] * sample_rate))
        hop = int(round(self.params["hop_s"] * sample_rate))
        if samples.size < n_fft:
            return np.zeros((0, self.dim), np.float32), np.zeros(0)
        import librosa  # imported here: it is slow to import and the DAG never needs it

        y = samples.astype(np.float32) / 32768.0
        mfcc = librosa.feature.mfcc(
            y=y, sr=sample_rate, n_mfcc=self.dim, n_fft=n_fft, hop_length=hop, n_mels=max(128, self.dim),
            center=False,
        )
        features = mfcc.T.astype(np.float32)
        timestamps = (np.arange(len(features)) * hop + n_fft / 2) / sample_rate
        return features, timestamps
