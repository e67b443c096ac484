"""OpenFace 2.0 action units, imported from FeatureExtraction CSVs (paper 000: 34-d)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pandas as pd

from affectflow.features.base import ClipBackbone, empty_features
from affectflow.features.files import clip_file, directory_fingerprint
from affectflow.features.registry import BACKBONES

# The 17 AUs for which OpenFace 2.0 gives both presence (_c) and intensity (_r); AU28 has
# presence only and is left out.
OPENFACE_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
                "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")
OPENFACE_COLUMNS = tuple(f"{au}_c" for au in OPENFACE_AUS) + tuple(f"{au}_r" for au in OPENFACE_AUS)


def read_openface_csv(path: Path, *, min_confidence: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(T, 34) presence then intensity of the 17 AUs, and timestamps, for the tracked frames.

    Frames where OpenFace failed (``success`` 0) or is less confident than ``min_confidence`` are
    left out; with several faces only face 0 is kept. Column names may carry OpenFace's leading
    spaces.
    """
    frame = pd.read_csv(path, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in ("timestamp", *OPENFACE_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not an OpenFace 2.0 FeatureExtraction CSV; missing columns {missing[:6]}")
    keep = np.ones(len(frame), bool)
    if "success" in frame:
        keep &= frame["success"].to_numpy() == 1
    if "confidence" in frame:
        keep &= frame["confidence"].to_numpy() >= min_confidence
    if "face_id" in frame:
        keep &= frame["face_id"].to_numpy() == 0
    values = frame.loc[keep, list(OPENFACE_COLUMNS)].to_numpy(np.float32)
    times = frame.loc[keep, "timestamp"].to_numpy(np.float64)
    finite = np.isfinite(values).all(1)
    return values[finite], times[finite]


@BACKBONES.register("openface_au34")
class OpenFaceAU34(ClipBackbone):
    """17 AUs x {presence, intensity} per tracked frame, from ``<dir>/<clip id>.csv`` written by
    OpenFace 2.0's FeatureExtraction (run it beforehand; it is a C++ tool, not a Python package)."""

    modality = "visual"
    dim = len(OPENFACE_COLUMNS)

    def __init__(self, *, dir: str = "", min_confidence: float = 0.0) -> None:
        if not dir:
            raise ValueError("openface_au34 needs dir: the directory of OpenFace CSVs, one <clip id>.csv per clip")
        self._dir = Path(dir).expanduser()
        self.params = {"dir": dir, "min_confidence": float(min_confidence)}
        self.missing_reason = ""

    def provenance(self) -> dict:
        """A fingerprint of the CSV directory (names and sizes) and pandas' version."""
        return {"weights_sha256": directory_fingerprint(self._dir, ".csv"),
                "package_version": f"pandas {importlib.metadata.version('pandas')}"}

    def extract_clip(self, clip_id: str, frame_timestamps: np.ndarray):
        """The clip's AU rows at OpenFace's own timestamps; no CSV gives (0, 34)."""
        path = clip_file(self._dir, clip_id, ".csv")
        if path is None:
            self.missing_reason = f"no {clip_id}.csv in {self._dir}"
            return empty_features(self.dim)
        self.missing_reason = ""
        return read_openface_csv(path, min_confidence=self.params["min_confidence"])
