"""dlib's 128-d face descriptor (ResNet, weights shipped in face-recognition-models)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np

from affectflow.features.base import CropBackbone, check_positive
from affectflow.features.registry import BACKBONES
from affectflow.runtime.hashing import file_sha256


def models_dir() -> Path:
    """The directory of dlib's model files inside face-recognition-models."""
    # find_spec locates the package without importing it: its __init__ imports the
    # deprecated pkg_resources and warns on every import.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-recognition-models is not installed (pip install face-recognition-models)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def face_rect(dlib, size: int, crop_margin: float):
    """The detector box inside a square crop of side ``size`` cut with ``crop_margin`` on each side."""
    inset = int(round(size * crop_margin / (1 + 2 * crop_margin)))
    return dlib.rectangle(inset, inset, size - 1 - inset, size - 1 - inset)


@BACKBONES.register("dlib_face128")
class DlibFace128(CropBackbone):
    """Per-frame 128-d identity descriptor computed on each valid face crop.

    The crop is aligned by dlib's 5-point shape predictor before the descriptor network,
    as dlib's own pipeline does. With ``max_frames`` > 0 at most that many valid frames, spread
    uniformly over the clip, are described: the network costs ~90 ms a face on a CPU without BLAS.
    """

    dim = 128
    batch_size = 16

    def __init__(
        self, *, num_jitters: int = 0, padding: float = 0.25, crop_margin: float = 0.1, max_frames: int = 0
    ) -> None:
        if max_frames < 0:
            raise ValueError(f"max_frames must be >= 0 (0 = every valid frame), not {max_frames}")
        check_positive("num_jitters", num_jitters, allow_zero=True)
        self.params = {"num_jitters": num_jitters, "padding": padding, "crop_margin": crop_margin,
                       "max_frames": max_frames}
        models = models_dir()
        self._weights = [
            models / "shape_predictor_5_face_landmarks.dat",
            models / "dlib_face_recognition_resnet_model_v1.dat",
        ]
        self._loaded = None  # loaded on first use: building the DAG only needs provenance()

    def provenance(self) -> dict:
        """Weights checksum and package version, for the shard attributes and the rule params."""
        return {
            "weights_sha256": ",".join(file_sha256(p) for p in self._weights),
            "package_version": f"dlib {importlib.metadata.version('dlib-bin')}",
        }

    def _models(self):
        if self._loaded is None:
            import dlib

            self._loaded = (dlib, dlib.shape_predictor(str(self._weights[0])),
                            dlib.face_recognition_model_v1(str(self._weights[1])))
        return self._loaded

    def embed(self, images) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N, 128) float32 descriptors."""
        dlib, shape_predictor, net = self._models()
        rows = []
        for image in np.asarray(images):
            image = np.ascontiguousarray(image)
            shape = shape_predictor(image, face_rect(dlib, image.shape[0], self.params["crop_margin"]))
            descriptor = net.compute_face_descriptor(image, shape, self.params["num_jitters"],
                                                     self.params["padding"])
            rows.append(np.asarray(descriptor, dtype=np.float32))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
