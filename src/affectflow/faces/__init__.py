"""Face detectors by name, and the faces stage that crops one face track per clip.

Importing the package registers the built-in detectors (``affectflow.faces.detectors``).
"""

from affectflow.faces import detectors  # noqa: F401  (registers the built-in detectors)
from affectflow.faces.registry import DETECTORS, create_detector

__all__ = ["DETECTORS", "create_detector"]
