"""The ``faces`` section of the config as keyword options for the stage, checked at start-up."""

from __future__ import annotations

from collections.abc import Mapping

from affectflow.config.names import registered
from affectflow.faces.options import FaceOptions


def stage_options(faces: Mapping, *, fps: float) -> dict:
    """Keyword options for :func:`affectflow.faces.stage.build_faces_shard` from the ``faces`` config.

    ``faces`` is the schema-validated section (every default filled in by the schema).

    Builds a :class:`FaceOptions` once so that a bad value or an unknown fallback detector fails
    when the workflow starts (naming the value and the options), not inside a job.
    """
    missing, sampling, fallback = faces["missing"], faces["sampling"], faces["fallback"]
    detectors = registered("detectors")
    if fallback["detector"] and fallback["detector"] not in detectors:
        raise ValueError(f"faces.fallback.detector: unknown {fallback['detector']!r}; known: {', '.join(detectors)}")
    options = {
        "align": faces["align"],
        "margin": float(faces["margin"]),
        "detect_side": int(faces["detect_side"]),
        "detect_every": int(faces["detect_every"]),
        "missing": missing["policy"],
        "max_gap": int(missing["max_gap"]),
        "smooth": int(missing["smooth"]),
        "sampling": sampling["mode"],
        "num_frames": int(sampling["num_frames"]),
        "segment_length": int(sampling["segment_length"]),
        "stride": int(sampling["stride"]),
        "max_seconds": sampling["max_seconds"],
        "frame_buffer_mb": int(faces["frame_buffer_mb"]),
        "jpeg_quality": int(faces["jpeg_quality"]),
        "fallback": fallback["detector"] or None,
        "fallback_params": dict(fallback["params"]),
    }
    FaceOptions(fps=fps, max_side=int(faces["max_side"]), batch_size=int(faces["batch_size"]),
                crop_size=int(faces["crop_size"]), **options)
    return options
