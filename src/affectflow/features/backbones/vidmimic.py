"""The Hume-Vidmimic2 organisers' pre-extracted features as backbones: ``vit/<id>.pkl`` (T x 384)
and ``wav2vec2/<id>.pkl`` (T x 768), so a user can start from them."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from affectflow.features.base import ClipBackbone, check_positive, empty_features
from affectflow.features.files import (
    clip_file,
    directory_fingerprint,
    load_array_pickle,
)
from affectflow.features.registry import BACKBONES


class _OrganiserFeatures(ClipBackbone):
    subdir = ""

    def __init__(self, *, root: str, rate_hz: float) -> None:
        if not root:
            raise ValueError(f"{self.name} needs root: the Hume-Vidmimic2 directory holding {self.subdir}/")
        check_positive("rate_hz", rate_hz)
        self._dir = Path(root).expanduser() / self.subdir
        self.params = {"root": root, "rate_hz": float(rate_hz)}
        self.missing_reason = ""

    def provenance(self) -> dict:
        """A fingerprint of the pickle directory (names and sizes) and numpy's version."""
        return {"weights_sha256": directory_fingerprint(self._dir, ".pkl"),
                "package_version": f"numpy {importlib.metadata.version('numpy')}"}

    def extract_clip(self, clip_id: str, frame_timestamps: np.ndarray):
        """The clip's rows, timestamped at ``rate_hz`` from 0; no file gives (0, dim)."""
        path = clip_file(self._dir, clip_id, ".pkl")
        if path is None:
            self.missing_reason = f"no {clip_id}.pkl in {self._dir}"
            return empty_features(self.dim)
        self.missing_reason = ""
        features = load_array_pickle(path)
        if features.shape[1] != self.dim:
            raise ValueError(f"{path}: {features.shape[1]} columns, {self.name} expects {self.dim}")
        features = np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
        return features, (np.arange(len(features)) + 0.5) / self.params["rate_hz"]


@BACKBONES.register("vidmimic_vit384")
class VidmimicViT384(_OrganiserFeatures):
    """The organisers' ViT features, ``<root>/vit/<id>.pkl``, 384-d per frame."""

    name = "vidmimic_vit384"
    modality = "visual"
    dim = 384
    subdir = "vit"

    def __init__(self, *, root: str = "", rate_hz: float = 30.0) -> None:
        super().__init__(root=root, rate_hz=rate_hz)


@BACKBONES.register("vidmimic_wav2vec2_768")
class VidmimicWav2Vec2768(_OrganiserFeatures):
    """The organisers' Wav2Vec2 features, ``<root>/wav2vec2/<id>.pkl``, 768-d at 50 Hz."""

    name = "vidmimic_wav2vec2_768"
    modality = "audio"
    dim = 768
    subdir = "wav2vec2"

    def __init__(self, *, root: str = "", rate_hz: float = 50.0) -> None:
        super().__init__(root=root, rate_hz=rate_hz)
