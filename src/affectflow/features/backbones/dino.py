"""DINO ViT-S/16 (transformers ``ViTModel``) from a local directory: the [CLS] token per frame."""

from __future__ import annotations

import numpy as np

from affectflow.features.backbones.hf import from_local, read_config, versions
from affectflow.features.backbones.torch_image import IMAGENET_MEAN, IMAGENET_STD
from affectflow.features.base import CropBackbone, check_positive
from affectflow.features.registry import BACKBONES
from affectflow.features.weights import resolve_weights, weights_sha256
from affectflow.runtime.device import pick_device


@BACKBONES.register("dino_vits16")
class DinoViTS16(CropBackbone):
    """The last layer's [CLS] token (``pool: cls``) or mean patch token (``pool: mean``) of a DINO
    ViT (facebook/dino-vits16 layout: 384-d), per valid frame; paper 000's baseline. ``dim`` is the
    checkpoint's hidden size. Crops are resized to the config's image size."""

    device = "auto"

    def __init__(self, *, weights: str = "dino_vits16", pool: str = "cls", mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, max_frames: int = 0) -> None:
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', not {pool!r}")
        check_positive("max_frames", max_frames, allow_zero=True)
        self._dir = resolve_weights(weights)
        config = read_config(self._dir)
        self.dim = int(config["hidden_size"])
        self._size = int(config.get("image_size", 224))
        self.params = {"weights": weights, "pool": pool, "mean": [float(v) for v in mean],
                       "std": [float(v) for v in std], "max_frames": int(max_frames)}
        self._loaded = None

    def provenance(self) -> dict:
        """The model directory's sha256 and the torch/transformers versions."""
        return {"weights_sha256": weights_sha256(self._dir), "package_version": versions()}

    def _model(self):
        if self._loaded is None:
            import torch
            from transformers import ViTModel

            device = pick_device(self.device)
            model = from_local(ViTModel, self._dir, add_pooling_layer=False).eval().to(device)
            mean = torch.tensor(self.params["mean"], device=device).view(1, 3, 1, 1)
            std = torch.tensor(self.params["std"], device=device).view(1, 3, 1, 1)
            self._loaded = (model, device, mean, std)
        return self._loaded

    def embed(self, images) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB crops -> (N, dim) float32."""
        import torch

        model, device, mean, std = self._model()
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        x = x.to(device).permute(0, 3, 1, 2).float().div_(255.0)
        x = torch.nn.functional.interpolate(x, size=(self._size, self._size), mode="bicubic",
                                            align_corners=False, antialias=True)
        x = (x - mean) / std
        cuda = device.startswith("cuda")
        with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.float16, enabled=cuda):
            hidden = model(pixel_values=x).last_hidden_state
        pooled = hidden[:, 0] if self.params["pool"] == "cls" else hidden[:, 1:].mean(1)
        return pooled.float().cpu().numpy()
