"""The ``faces`` section of the config as keyword options for the stage, checked at start-up."""

from __future__ import annotations

from collections.abc import Mapping

from affectflow.faces.registry import DETECTORS
from affectflow.faces.stage import FaceOptions


def stage_options(faces: Mapping, *, fps: float) -> dict:
    """Keyword options for :func:`affectflow.faces.stage.build_faces_shard` from the ``faces`` config.

    Builds a :class:`FaceOptions` once so that a bad value or an unknown fallback detector fails
    when the workflow starts (naming the value and the options), not inside a job.
    """
    missing = dict(faces.get("missing", {}))
    sampling = dict(faces.get("sampling", {}))
    fallback = dict(faces.get("fallback") or {})
    if fallback.get("detector") and fallback["detector"] not in DETECTORS:
        raise ValueError(f"faces.fallback.detector: unknown {fallback['detector']!r}; "
                         f"known: {', '.join(DETECTORS.names())}")
    options = {
        "align": faces.get("align", "similarity"),
        "margin": float(faces.get("margin", 0.1)),
        "detect_side": int(faces.get("detect_side", 0)),
        "detect_every": int(faces.get("detect_every", 1)),
        "missing": missing.get("policy", "drop"),
        "max_gap": int(missing.get("max_gap", 12)),
        "smooth": int(missing.get("smooth", 0)),
        "sampling": sampling.get("mode", "all"),
        "num_frames": int(sampling.get("num_frames", 32)),
        "segment_length": int(sampling.get("segment_length", 150)),
        "stride": int(sampling.get("stride", 150)),
        "max_seconds": sampling.get("max_seconds"),
        "frame_buffer_mb": int(faces.get("frame_buffer_mb", 512)),
        "jpeg_quality": int(faces.get("jpeg_quality", 90)),
        "fallback": fallback.get("detector") or None,
        "fallback_params": dict(fallback.get("params", {})),
    }
    FaceOptions(fps=fps, max_side=int(faces.get("max_side", 640)), batch_size=int(faces.get("batch_size", 32)),
                crop_size=int(faces.get("crop_size", 112)), **options)
    return options
