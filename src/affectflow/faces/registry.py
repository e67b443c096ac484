"""Registry of face detectors.

A detector takes a batch of RGB frames (B, H, W, 3) and returns, per frame, every face it finds
(``detect_all``) or only the largest (``detect``): box (x1, y1, x2, y2), score, 5 landmarks (eyes,
nose, mouth corners, in image order left to right) and, for detectors that have them, 68.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from affectflow.registry import Registry


@dataclass(frozen=True)
class Detection:
    """One face in one frame."""

    box: np.ndarray  # (4,) x1, y1, x2, y2 in frame pixels
    score: float
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, left and right mouth corners
    landmarks68: np.ndarray | None = field(default=None)  # (68, 2) iBUG points, when the detector has them

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def scaled(self, factor: float) -> Detection:
        """The same detection with every coordinate multiplied by ``factor``."""
        return replace(
            self,
            box=np.asarray(self.box, np.float32) * factor,
            landmarks=np.asarray(self.landmarks, np.float32) * factor,
            landmarks68=None if self.landmarks68 is None else np.asarray(self.landmarks68, np.float32) * factor,
        )


class FaceDetector(Protocol):
    """What the faces stage needs of a detector: every face of each frame, or the largest one."""

    def detect_all(self, frames: np.ndarray) -> list[list[Detection]]: ...

    def detect(self, frames: np.ndarray) -> list[Detection | None]: ...


class DetectorBase:
    """Shared behaviour: ``detect`` keeps the largest face of ``detect_all``."""

    def detect_all(self, frames: np.ndarray) -> list[list[Detection]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def detect(self, frames: np.ndarray) -> list[Detection | None]:
        """One detection (the largest face) or None per frame of ``frames`` (B, H, W, 3) uint8 RGB."""
        return [max(faces, key=lambda d: d.area) if faces else None for faces in self.detect_all(frames)]


DETECTORS: Registry = Registry("face detector")


def create_detector(name: str, **params) -> FaceDetector:
    """Build the detector registered under ``name`` with its keyword parameters."""
    return DETECTORS.get(name)(**params)
