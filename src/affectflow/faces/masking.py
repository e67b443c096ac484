"""Upper/lower face masking, the data-balancing augmentation of paper 004 (AU task).

A copy of a face crop has its upper or lower half blacked out, the split following the face's
own orientation (the line through the nose tip parallel to the eye line, from the landmarks);
the AUs whose muscles lie under the mask are set to 0 in the copy's labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from affectflow.faces.detectors.dlib_hog import five_from_68

#: AUs of the upper face (brows, lids, cheeks: above the nose tip) and of the lower face.
UPPER_AUS = ("AU1", "AU2", "AU4", "AU5", "AU6", "AU7", "AU9")
LOWER_AUS = ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26")
#: The AUs paper 004 augments (below-average positives in Aff-Wild2).
AUGMENTED_AUS = ("AU1", "AU2", "AU4", "AU5", "AU12", "AU15", "AU23", "AU24", "AU26")
REGIONS = ("upper", "lower")


@dataclass(frozen=True)
class MaskedFace:
    """A masked crop, the AUs the mask hides and the region it covers (True = masked)."""

    image: np.ndarray
    hidden_aus: tuple[str, ...]
    mask: np.ndarray


def _five(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, np.float64)
    if points.shape == (68, 2):
        return five_from_68(points).astype(np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected landmarks of shape (5, 2) or (68, 2), not {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks must be finite (an invalid frame has no face to mask)")
    return points


def region_mask(shape: tuple[int, int], landmarks: np.ndarray, *, region: str) -> np.ndarray:
    """Boolean (H, W) mask of the ``region`` ("upper" or "lower") of the face in an image of ``shape``.

    The boundary is the line through the nose tip parallel to the line between the eye centres;
    "upper" is the side of the eyes.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; options: {', '.join(REGIONS)}")
    pts = _five(landmarks)
    eye_l, eye_r, nose = pts[0], pts[1], pts[2]
    direction = eye_r - eye_l
    if np.linalg.norm(direction) < 1e-6:
        raise ValueError("the two eye landmarks coincide; cannot orient the face")
    normal = np.array([-direction[1], direction[0]])  # points from the eyes towards the mouth in image coords
    if np.dot(normal, pts[3:].mean(0) - (eye_l + eye_r) / 2) < 0:
        normal = -normal
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    side = (xs + 0.5 - nose[0]) * normal[0] + (ys + 0.5 - nose[1]) * normal[1]
    return side < 0 if region == "upper" else side >= 0


def mask_face(crop: np.ndarray, landmarks: np.ndarray, *, region: str, fill: int = 0,
              au_names: tuple[str, ...] | list[str] | None = None) -> MaskedFace:
    """Mask the upper or lower face of ``crop`` (H, W, C) given its ``landmarks`` in crop pixels.

    Returns the masked copy (the input is not changed) and which AUs it hides: those of
    ``au_names`` (default: all known) that belong to the region.
    """
    crop = np.asarray(crop)
    if crop.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W) or (H, W, C), not shape {crop.shape}")
    mask = region_mask(crop.shape[:2], landmarks, region=region)
    image = crop.copy()
    image[mask] = fill
    region_aus = UPPER_AUS if region == "upper" else LOWER_AUS
    names = UPPER_AUS + LOWER_AUS if au_names is None else tuple(au_names)
    return MaskedFace(image, tuple(a for a in names if a in region_aus), mask)


def masked_labels(labels: np.ndarray, au_names: tuple[str, ...] | list[str], hidden: tuple[str, ...]) -> np.ndarray:
    """A copy of ``labels`` (..., n_aus) with the ``hidden`` AUs set to 0, as paper 004 does."""
    labels = np.array(labels, copy=True)
    names = list(au_names)
    if labels.shape[-1] != len(names):
        raise ValueError(f"labels have {labels.shape[-1]} columns but {len(names)} AU names were given")
    for au in hidden:
        labels[..., names.index(au)] = 0
    return labels


def draw_mask_preview(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The crop with its 5 landmarks drawn (for reports and debugging)."""
    out = np.ascontiguousarray(image.copy())
    for x, y in _five(landmarks):
        cv2.circle(out, (int(round(x)), int(round(y))), 2, (255, 0, 0), -1)
    return out
