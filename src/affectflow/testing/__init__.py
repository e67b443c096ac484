"""Test helpers shipped with the package: tiny data sets in each official layout.

``make_vidmimic``, ``make_reaction`` and ``make_affwild2`` build small real data sets (mp4
clips with a face and speech, labels planted on what is seen and heard) for tests and
benchmarks; tiny models live in :mod:`affectflow.features.testing`.
"""

from affectflow.testing.affwild2 import make_affwild2
from affectflow.testing.datasets import (
    PROPERTIES_FILE,
    SAMPLE_SUBMISSION_NAMES,
    TEST_LIST_DIR,
    TRUTH_FILE,
    make_reaction,
    make_vidmimic,
)

__all__ = [
    "PROPERTIES_FILE",
    "SAMPLE_SUBMISSION_NAMES",
    "TEST_LIST_DIR",
    "TRUTH_FILE",
    "make_affwild2",
    "make_reaction",
    "make_vidmimic",
]
