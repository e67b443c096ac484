"""Demo data set: small real media laid out exactly like Hume-Vidmimic2, with planted labels.

:mod:`affectflow.demo.plan` says what the set is (the clips, their controlled properties and
the label formulas); :mod:`affectflow.demo.render` renders it with ffmpeg
(:func:`build_demo_dataset`). ``python -m affectflow.demo`` builds it from the command line.
"""

from affectflow.demo.plan import (
    LABEL_NOISE_SD,
    LABEL_TERMS,
    PROPERTY_COLUMNS,
    draw_labels,
    expected_labels,
    normalised_properties,
    plan_clips,
)
from affectflow.demo.render import build_demo_dataset, ffmpeg_command, write_labels, write_speech_loop

__all__ = [
    "LABEL_NOISE_SD",
    "LABEL_TERMS",
    "PROPERTY_COLUMNS",
    "build_demo_dataset",
    "draw_labels",
    "expected_labels",
    "ffmpeg_command",
    "normalised_properties",
    "plan_clips",
    "write_labels",
    "write_speech_loop",
]
