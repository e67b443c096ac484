"""How the faces stage works: :class:`FaceOptions`, checked when built.

Every default is the config schema's (``faces``, and ``media.fps`` for the frame rate), read
through :meth:`FaceOptions.from_config` from :func:`affectflow.config.schema.section_defaults`:
the schema is the one place they are written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from affectflow.config.schema import section_defaults
from affectflow.faces.fill import check_policy
from affectflow.faces.sampling import check_sampling

__all__ = ["ALIGN_MODES", "STAGE_ARGUMENTS", "FaceOptions"]

#: how a crop is cut: onto the 5-landmark template (``similarity``) or as a square around the box
ALIGN_MODES = ("similarity", "box")
#: the fields the faces stage takes as arguments of their own (the rest travel as its ``options``)
STAGE_ARGUMENTS = ("fps", "max_side", "batch_size", "crop_size")


def _config_fields(faces: Mapping, *, fps: float) -> dict:
    """The :class:`FaceOptions` fields of a ``faces`` config section (see :meth:`FaceOptions.from_config`)."""
    missing, sampling, fallback = faces["missing"], faces["sampling"], faces["fallback"]
    return {
        "fps": fps,
        "max_side": int(faces["max_side"]),
        "batch_size": int(faces["batch_size"]),
        "crop_size": int(faces["crop_size"]),
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


def _schema_defaults() -> dict:
    """The fields' defaults: the fields of the schema's ``faces`` defaults (nested sections included)
    at the schema's ``media.fps``."""
    faces = section_defaults("faces")
    for section in ("missing", "sampling", "fallback"):
        faces[section] = section_defaults("faces", section)
    return _config_fields(faces, fps=float(section_defaults("media")["fps"]))


_DEFAULTS = _schema_defaults()


@dataclass(frozen=True)
class FaceOptions:
    """How the faces stage works (the ``faces`` section of the config, minus the detector).

    Build with keywords (a field left out takes the schema's default) or from the config
    (:meth:`from_config`); bad values fail at once naming the value and the options.
    """

    fps: float = _DEFAULTS["fps"]
    max_side: int = _DEFAULTS["max_side"]
    batch_size: int = _DEFAULTS["batch_size"]
    crop_size: int = _DEFAULTS["crop_size"]
    align: str = _DEFAULTS["align"]
    margin: float = _DEFAULTS["margin"]  # for align="box": box side enlarged by this fraction on each side
    detect_side: int = _DEFAULTS["detect_side"]  # detect on frames downscaled to this longest side (0: as decoded)
    detect_every: int = _DEFAULTS["detect_every"]  # detect every k-th frame, interpolate the boxes between
    missing: str = _DEFAULTS["missing"]
    max_gap: int = _DEFAULTS["max_gap"]
    smooth: int = _DEFAULTS["smooth"]  # moving-average window over valid frames after interpolation (0/1: off)
    sampling: str = _DEFAULTS["sampling"]
    num_frames: int = _DEFAULTS["num_frames"]
    segment_length: int = _DEFAULTS["segment_length"]
    stride: int = _DEFAULTS["stride"]
    max_seconds: float | None = _DEFAULTS["max_seconds"]
    frame_buffer_mb: int = _DEFAULTS["frame_buffer_mb"]
    jpeg_quality: int = _DEFAULTS["jpeg_quality"]
    fallback: str | None = _DEFAULTS["fallback"]
    fallback_params: dict = field(default_factory=lambda: dict(_DEFAULTS["fallback_params"]))

    @classmethod
    def from_config(cls, faces: Mapping, *, fps: float) -> FaceOptions:
        """The options of the config's ``faces`` section (its detector and detector params aside) at
        frame rate ``fps`` (``media.fps``); ``faces`` is schema-validated (every default filled in)."""
        return cls(**_config_fields(faces, fps=fps))

    def __post_init__(self) -> None:
        """Refuse unknown modes and out-of-range numbers, naming the value and the options."""
        if self.align not in ALIGN_MODES:
            raise ValueError(f"unknown align {self.align!r}; options: {', '.join(ALIGN_MODES)}")
        check_policy(self.missing)
        check_sampling(mode=self.sampling, num_frames=self.num_frames, segment_length=self.segment_length,
                       stride=self.stride, max_seconds=self.max_seconds)
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, not {self.detect_every}")
        if self.fps <= 0 or self.batch_size < 1 or self.crop_size < 16:
            raise ValueError(f"need fps > 0, batch_size >= 1, crop_size >= 16; got {self.fps}, "
                             f"{self.batch_size}, {self.crop_size}")
