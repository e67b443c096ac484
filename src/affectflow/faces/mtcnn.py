"""MTCNN (facenet-pytorch, weights shipped in the wheel), batched over frames."""

from __future__ import annotations

import numpy as np

from affectflow.device import pick_device
from affectflow.faces.registry import DETECTORS, Detection


@DETECTORS.register("mtcnn")
class MtcnnDetector:
    """MTCNN on a batch of same-sized frames; keeps the largest face of each frame."""

    def __init__(self, *, min_score: float = 0.9, min_face_size: int = 20, device: str = "auto") -> None:
        from facenet_pytorch import MTCNN

        self.min_score = min_score
        self.device = pick_device(device)
        self._mtcnn = MTCNN(
            keep_all=True, select_largest=True, min_face_size=min_face_size, device=self.device
        )

    def detect(self, frames: np.ndarray) -> list[Detection | None]:
        """One detection (or None) per frame of ``frames`` (B, H, W, 3) uint8 RGB."""
        boxes, probs, points = self._mtcnn.detect(list(frames), landmarks=True)
        results: list[Detection | None] = []
        for frame_boxes, frame_probs, frame_points in zip(boxes, probs, points):
            # Under numpy 2 facenet-pytorch returns object arrays, and None for no face.
            if frame_boxes is None or len(frame_boxes) == 0:
                results.append(None)
                continue
            frame_boxes = np.asarray(frame_boxes, dtype=np.float32).reshape(-1, 4)
            frame_probs = np.asarray(frame_probs, dtype=np.float32).reshape(-1)
            frame_points = np.asarray(frame_points, dtype=np.float32).reshape(-1, 5, 2)
            keep = frame_probs >= self.min_score
            if not keep.any():
                results.append(None)
                continue
            frame_boxes, frame_probs, frame_points = frame_boxes[keep], frame_probs[keep], frame_points[keep]
            areas = (frame_boxes[:, 2] - frame_boxes[:, 0]) * (frame_boxes[:, 3] - frame_boxes[:, 1])
            best = int(np.argmax(areas))
            results.append(Detection(frame_boxes[best], float(frame_probs[best]), frame_points[best]))
        return results
