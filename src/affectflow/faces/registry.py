"""Registry of face detectors.

A detector takes a batch of RGB frames (B, H, W, 3) and returns, per frame, the box
(x1, y1, x2, y2) of the main face, its score and 5 landmarks, or ``None`` when it finds no face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from affectflow.registry import Registry


@dataclass(frozen=True)
class Detection:
    """The main face of one frame."""

    box: np.ndarray  # (4,) x1, y1, x2, y2 in frame pixels
    score: float
    landmarks: np.ndarray  # (5, 2): eyes, nose, mouth corners


class FaceDetector(Protocol):
    def detect(self, frames: np.ndarray) -> list[Detection | None]: ...


DETECTORS: Registry = Registry("face detector")


def create_detector(name: str, **params) -> FaceDetector:
    """Build the detector registered under ``name`` with its keyword parameters."""
    return DETECTORS.get(name)(**params)


# Register the built-in detectors.
from affectflow.faces import mtcnn  # noqa: E402,F401
