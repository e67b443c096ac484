"""MTCNN (facenet-pytorch, weights shipped in the wheel), batched over frames."""

from __future__ import annotations

import contextlib

import numpy as np

from affectflow.faces.registry import DETECTORS, Detection, DetectorBase
from affectflow.runtime.device import pick_device


@DETECTORS.register("mtcnn")
class MtcnnDetector(DetectorBase):
    """MTCNN on a batch of same-sized frames (one forward pass per pyramid level for the batch).

    Runs on the GPU when one is visible (``device="auto"``).
    """

    def __init__(
        self,
        *,
        min_score: float = 0.9,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] | list[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        num_threads: int = 1,
        device: str = "auto",
    ) -> None:
        """``min_face_size`` is in pixels of the frames given to ``detect``; ``thresholds`` are the
        P-, R- and O-net score cut-offs (higher first-stage values pass fewer candidates on: faster
        on CPU); ``factor`` is the image-pyramid step (facenet-pytorch's defaults).

        ``num_threads`` caps torch's CPU threads during detection (0: torch's default). One is the
        default because the decoder runs beside it and shard jobs run in parallel: on 2 busy cores,
        torch's spinning OpenMP workers made detection 10x slower with 2 threads than with 1
        (bench/faces.py). The previous setting is restored after each call.
        """
        from facenet_pytorch import MTCNN

        if len(thresholds) != 3:
            raise ValueError(f"thresholds must be three numbers (P-, R-, O-net), not {thresholds!r}")
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0 (0: torch's default), not {num_threads}")
        self.num_threads = num_threads
        self.min_score = min_score
        self.device = pick_device(device)
        self._mtcnn = MTCNN(
            keep_all=True, select_largest=True, min_face_size=min_face_size, thresholds=list(thresholds),
            factor=factor, device=self.device,
        )

    @contextlib.contextmanager
    def _threads(self):
        import torch

        if not self.num_threads or self.device != "cpu":
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def detect_all(self, frames: np.ndarray) -> list[list[Detection]]:
        """Every face scoring at least ``min_score``, per frame of ``frames`` (B, H, W, 3) uint8 RGB."""
        if len(frames) == 0:
            return []
        with self._threads():
            boxes, probs, points = self._mtcnn.detect(list(frames), landmarks=True)
        results: list[list[Detection]] = []
        for frame_boxes, frame_probs, frame_points in zip(boxes, probs, points):
            # Under numpy 2 facenet-pytorch returns object arrays, and None for no face.
            if frame_boxes is None or len(frame_boxes) == 0:
                results.append([])
                continue
            frame_boxes = np.asarray(frame_boxes, dtype=np.float32).reshape(-1, 4)
            frame_probs = np.asarray(frame_probs, dtype=np.float32).reshape(-1)
            frame_points = np.asarray(frame_points, dtype=np.float32).reshape(-1, 5, 2)
            results.append([
                Detection(box, float(prob), pts)
                for box, prob, pts in zip(frame_boxes, frame_probs, frame_points)
                if prob >= self.min_score
            ])
        return results
