"""The ``faces`` section of the config as keyword options for the stage, checked at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

from affectflow.config.names import registered
from affectflow.faces.options import STAGE_ARGUMENTS, FaceOptions


def stage_options(faces: Mapping, *, fps: float) -> dict:
    """Keyword options for :func:`affectflow.faces.stage.build_faces_shard` from the ``faces`` config:
    the :class:`FaceOptions` fields but those the stage takes as arguments (``STAGE_ARGUMENTS``).

    ``faces`` is the schema-validated section (every default filled in by the schema).

    Builds the :class:`FaceOptions` (:meth:`~FaceOptions.from_config`) so that a bad value or an
    unknown fallback detector fails when the workflow starts (naming the value and the options),
    not inside a job.
    """
    fallback = faces["fallback"]["detector"]
    detectors = registered("detectors")
    if fallback and fallback not in detectors:
        raise ValueError(f"faces.fallback.detector: unknown {fallback!r}; known: {', '.join(detectors)}")
    options = asdict(FaceOptions.from_config(faces, fps=fps))
    return {k: v for k, v in options.items() if k not in STAGE_ARGUMENTS}
