"""dlib's HOG face detector with its 68-point shape predictor (models from face-recognition-models)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from affectflow.faces.registry import DETECTORS, Detection, DetectorBase


def dlib_model_path(name: str) -> Path:
    """Path of one of the dlib models shipped in ``face-recognition-models``."""
    # find_spec locates the package without importing it (its __init__ imports pkg_resources).
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"dlib model {name!r} not found at {path}")
    return path


def five_from_68(points: np.ndarray) -> np.ndarray:
    """The 5 alignment points from iBUG 68: eye centres, nose tip, mouth corners, shape (5, 2)."""
    points = np.asarray(points, np.float32)
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


@DETECTORS.register("dlib")
class DlibHogDetector(DetectorBase):
    """HOG + linear SVM face detector and 68 landmarks (paper 001's face stage).

    ``upsample`` doubles the image that many times first (finds faces under ~80 px, 4x slower
    each); ``min_score`` filters on the SVM margin (dlib's own threshold is 0). dlib works one
    frame at a time, on the CPU.
    """

    def __init__(self, *, upsample: int = 0, min_score: float = 0.0) -> None:
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, not {upsample}")
        import dlib

        self.upsample = upsample
        self.min_score = min_score
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))

    def detect_all(self, frames: np.ndarray) -> list[list[Detection]]:
        """Every face per frame of ``frames`` (B, H, W, 3) uint8 RGB, each with 68 landmarks."""
        results = []
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            rects, scores, _ = self._detector.run(frame, self.upsample, self.min_score)
            faces = []
            for rect, score in zip(rects, scores):
                shape = self._predictor(frame, rect)
                pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
                box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], dtype=np.float32)
                faces.append(Detection(box, float(score), five_from_68(pts), pts))
            results.append(faces)
        return results
