"""Face alignment: a similarity transform taking 5 landmarks onto a fixed template.

The template is the 112x112 one of ArcFace/InsightFace (the "cropped aligned" faces that the
IResNet backbones of papers 003 and 004 expect): eye centres, nose tip, mouth corners. Other
sizes scale it.
"""

from __future__ import annotations

import cv2
import numpy as np

#: (5, 2) target positions for a 112x112 crop: left eye, right eye, nose, mouth left, mouth right.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def template(size: int) -> np.ndarray:
    """The 5-point template scaled to a ``size`` x ``size`` crop."""
    return TEMPLATE_112 * (size / 112.0)


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst, (2, 3).

    Umeyama's closed form without reflection: exact for points related by a similarity,
    the best fit in squared error otherwise.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N>=2, 2) point sets of the same shape, not {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks must be finite")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("landmarks are all at one point; no transform")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / var_s
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (..., 2) points."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_crop(frame: np.ndarray, landmarks: np.ndarray, *, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``frame`` so that its 5 ``landmarks`` land on the template: ``(crop, matrix)``.

    ``crop`` is ``size`` x ``size`` x 3 uint8; ``matrix`` maps frame to crop pixels (use
    :func:`transform_points` to move other landmarks into the crop). Outside the frame the
    border is replicated, as in :func:`affectflow.faces.crop.square_crop`.
    """
    matrix = similarity_matrix(landmarks, template(size))
    crop = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, matrix
