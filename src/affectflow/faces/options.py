"""How the faces stage works: :class:`FaceOptions`, checked when built."""

from __future__ import annotations

from dataclasses import dataclass, field

from affectflow.faces.fill import check_policy
from affectflow.faces.sampling import check_sampling

__all__ = ["ALIGN_MODES", "FaceOptions"]

#: how a crop is cut: onto the 5-landmark template (``similarity``) or as a square around the box
ALIGN_MODES = ("similarity", "box")


@dataclass(frozen=True)
class FaceOptions:
    """How the faces stage works (the ``faces`` section of the config, minus the detector).

    Build with keywords; bad values fail at once naming the value and the options.
    """

    fps: float = 30.0
    max_side: int = 640
    batch_size: int = 32
    crop_size: int = 112
    align: str = "similarity"
    margin: float = 0.1  # for align="box": box side enlarged by this fraction on each side
    detect_side: int = 0  # detect on frames downscaled to this longest side (0: as decoded)
    detect_every: int = 1  # detect every k-th frame, interpolate the boxes between
    missing: str = "drop"
    max_gap: int = 12
    smooth: int = 0  # moving-average window over valid frames after interpolation (0/1: off)
    sampling: str = "all"
    num_frames: int = 32
    segment_length: int = 150
    stride: int = 150
    max_seconds: float | None = None
    frame_buffer_mb: int = 512
    jpeg_quality: int = 90
    fallback: str | None = None
    fallback_params: dict = field(default_factory=dict)

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
