"""dlib's 128-d face descriptor (ResNet, weights shipped in face-recognition-models)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np

from affectflow.faces.crop import decode_jpeg
from affectflow.features.registry import BACKBONES, file_sha256


def _models_dir() -> Path:
    # find_spec locates the package without importing it: its __init__ imports the
    # deprecated pkg_resources and warns on every import.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-recognition-models is not installed (pip install face-recognition-models)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@BACKBONES.register("dlib_face128")
class DlibFace128:
    """Per-frame 128-d identity descriptor computed on each valid face crop.

    The crop is aligned by dlib's 5-point shape predictor before the descriptor network,
    as dlib's own pipeline does.
    """

    modality = "visual"
    dim = 128

    def __init__(
        self, *, num_jitters: int = 0, padding: float = 0.25, crop_margin: float = 0.1, max_frames: int = 0
    ) -> None:
        if max_frames < 0:
            raise ValueError(f"max_frames must be >= 0 (0 = every valid frame), not {max_frames}")
        self.params = {"num_jitters": num_jitters, "padding": padding, "crop_margin": crop_margin,
                       "max_frames": max_frames}
        models = _models_dir()
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

    def extract(self, crops: list[bytes], valid: np.ndarray, timestamps: np.ndarray):
        """Descriptors of the valid frames: (n, 128) float32 and their timestamps.

        With ``max_frames`` > 0 at most that many valid frames, spread uniformly over the clip,
        are described: the network costs ~90 ms a face on a CPU without BLAS.
        """
        dlib, shape_predictor, net = self._models()
        chosen = np.flatnonzero(np.asarray(valid, bool))
        if self.params["max_frames"] and len(chosen) > self.params["max_frames"]:
            chosen = chosen[np.linspace(0, len(chosen) - 1, self.params["max_frames"]).round().astype(int)]
        rows, times = [], []
        for index in chosen:
            blob, t = crops[index], timestamps[index]
            image = decode_jpeg(blob)
            size = image.shape[0]
            # The crop holds the detector box plus a margin on each side.
            inset = int(round(size * self.params["crop_margin"] / (1 + 2 * self.params["crop_margin"])))
            rect = dlib.rectangle(inset, inset, size - 1 - inset, size - 1 - inset)
            shape = shape_predictor(image, rect)
            descriptor = net.compute_face_descriptor(
                image, shape, self.params["num_jitters"], self.params["padding"]
            )
            rows.append(np.asarray(descriptor, dtype=np.float32))
            times.append(t)
        features = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        return features, np.asarray(times, dtype=np.float64)
