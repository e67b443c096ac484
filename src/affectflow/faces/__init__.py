"""Face detectors by name, and the faces stage that crops one face track per clip."""

from affectflow.faces.registry import DETECTORS, create_detector

__all__ = ["DETECTORS", "create_detector"]
