"""Square face crops from detector boxes, stored as JPEG bytes."""

from __future__ import annotations

import cv2
import numpy as np


def square_crop(frame: np.ndarray, box: np.ndarray, *, size: int, margin: float = 0.1) -> np.ndarray:
    """Crop a square around ``box`` (enlarged by ``margin`` of its side), resized to ``size``.

    Parts of the square outside the frame are filled by replicating the border, so a face at
    the edge keeps its position in the crop.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    side_px = max(2, int(round(side)))
    h, w = frame.shape[:2]
    pad = max(0, -left, -top, left + side_px - w, top + side_px - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top = left + pad, top + pad
    patch = frame[top : top + side_px, left : left + side_px]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray, *, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB image."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(blob: bytes) -> np.ndarray:
    """RGB image from JPEG bytes."""
    bgr = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
