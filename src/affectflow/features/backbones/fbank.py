"""Kaldi-style log mel filterbank energies (torchaudio.compliance.kaldi.fbank)."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from affectflow.features.base import AudioBackbone, check_positive, empty_features
from affectflow.features.registry import BACKBONES


@BACKBONES.register("kaldi_fbank")
class KaldiFbank(AudioBackbone):
    """``num_mel_bins`` log mel energies per 10 ms over 25 ms Povey windows, as Kaldi's
    compute-fbank-feats computes them (papers 003, 004). Dither is off by default, so the same
    audio gives the same features."""

    def __init__(self, *, num_mel_bins: int = 80, frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0,
                 dither: float = 0.0) -> None:
        check_positive("num_mel_bins", num_mel_bins)
        check_positive("frame_length_ms", frame_length_ms)
        check_positive("frame_shift_ms", frame_shift_ms)
        check_positive("dither", dither, allow_zero=True)
        self.params = {"num_mel_bins": num_mel_bins, "frame_length_ms": frame_length_ms,
                       "frame_shift_ms": frame_shift_ms, "dither": dither}
        self.dim = num_mel_bins

    def provenance(self) -> dict:
        """No weights; torchaudio's version decides the numbers."""
        return {"weights_sha256": "", "package_version": f"torchaudio {importlib.metadata.version('torchaudio')}"}

    def extract(self, samples: np.ndarray, sample_rate: int):
        """(T, num_mel_bins) float32 and window-centre timestamps; audio shorter than a window gives T = 0."""
        window = int(sample_rate * self.params["frame_length_ms"] / 1000)
        shift = int(sample_rate * self.params["frame_shift_ms"] / 1000)
        if samples.size < window:
            return empty_features(self.dim)
        import torch
        from torchaudio.compliance import kaldi

        # Kaldi works on the int16 scale.
        wave = torch.from_numpy(samples.astype(np.float32))[None]
        features = kaldi.fbank(wave, num_mel_bins=self.dim, frame_length=self.params["frame_length_ms"],
                               frame_shift=self.params["frame_shift_ms"], dither=self.params["dither"],
                               sample_frequency=sample_rate, snip_edges=True).numpy().astype(np.float32)
        timestamps = (np.arange(len(features)) * shift + window / 2) / sample_rate
        return features, timestamps
