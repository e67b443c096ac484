"""What backbones share: empty results, frame selection, decode-then-embed for face crops."""

from __future__ import annotations

import numpy as np

from affectflow.faces.crop import decode_jpeg


def empty_features(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """A (0, dim) float32 array and no timestamps: the answer for a clip with nothing to extract."""
    return np.zeros((0, dim), np.float32), np.zeros(0, np.float64)


def check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    """Reject a non-positive (or negative, with ``allow_zero``) numeric parameter, naming it."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


class CropBackbone:
    """A per-frame visual backbone reading a faces shard's JPEG crops.

    Subclasses set ``dim`` and ``params`` and implement ``embed(images)``: (N, H, W, 3) uint8 RGB
    to (N, dim) float32. ``extract`` describes the valid frames only (at most ``max_frames`` of
    them, spread over the clip), so a clip without a valid face gives (0, dim). The features
    stage feeds ``embed`` batches decoded in DataLoader workers instead of calling ``extract``.
    """

    modality = "visual"
    reads = "crops"
    batch_size = 64  # frames per embed call; the stage may override it

    def select_frames(self, valid: np.ndarray) -> np.ndarray:
        """Indices of the frames to describe: the valid ones, thinned to ``max_frames``."""
        chosen = np.flatnonzero(np.asarray(valid, bool))
        limit = int(self.params.get("max_frames", 0) or 0)
        if limit and len(chosen) > limit:
            chosen = chosen[np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
        return chosen

    def extract(self, crops: list[bytes], valid: np.ndarray, timestamps: np.ndarray):
        """(n, dim) float32 features of the chosen valid frames and their timestamps."""
        chosen = self.select_frames(valid)
        if not len(chosen):
            return empty_features(self.dim)
        rows, batch = [], []
        for i in chosen:
            image = decode_jpeg(crops[i])
            # a batch holds crops of one size (a faces shard's are all alike)
            if batch and (len(batch) == self.batch_size or image.shape != batch[0].shape):
                rows.append(np.asarray(self.embed(np.stack(batch)), np.float32))
                batch = []
            batch.append(image)
        rows.append(np.asarray(self.embed(np.stack(batch)), np.float32))
        return np.concatenate(rows), np.asarray(timestamps, np.float64)[chosen]


class AudioBackbone:
    """A backbone reading a media shard's 16-bit mono audio: ``extract(samples, sample_rate)``."""

    modality = "audio"
    reads = "audio"


class ClipBackbone:
    """Features imported per clip from files (OpenFace CSVs, the organisers' pickles).

    ``extract_clip(clip_id, frame_timestamps)`` returns (T, dim) and timestamps; a clip with no
    file gives (0, dim) and a reason in ``missing_reason``.
    """

    reads = "clip"
