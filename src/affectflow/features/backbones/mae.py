"""A masked-autoencoder ViT (transformers ``ViTMAEModel``) from a local directory: one vector per
face crop (papers 003 and 004 use an MAE trained on facial expression data, with your weights).

``ViTMAEModel`` masks 75 % of the patches, chosen at random, on every call: a pretraining device,
not a feature extractor. Here the model is loaded with ``mask_ratio`` 0 and given the noise
0, 1, 2, ... so that its shuffle is the identity: every patch, in raster order, on every call.
"""

from __future__ import annotations

import functools

from affectflow.features.backbones.dino import DinoViTS16
from affectflow.features.backbones.hf import from_local, read_config
from affectflow.features.backbones.torch_image import IMAGENET_MEAN, IMAGENET_STD
from affectflow.features.registry import BACKBONES
from affectflow.runtime.device import pick_device


@functools.cache
def unmasked_mae_class():
    """A module running a ``ViTMAEModel`` (loaded with mask_ratio 0) on all its patches in order."""
    import torch

    class UnmaskedMAE(torch.nn.Module):
        def __init__(self, mae):
            super().__init__()
            self.mae = mae

        def forward(self, pixel_values):
            """``ViTMAEModel`` output with [CLS] then every patch token in raster order."""
            n = self.mae.embeddings.patch_embeddings.num_patches
            # argsort of increasing noise keeps the patches in order
            noise = torch.arange(n, dtype=torch.float32, device=pixel_values.device).expand(len(pixel_values), n)
            out = self.mae(pixel_values=pixel_values, noise=noise)
            if out.last_hidden_state.shape[1] != n + 1:
                raise RuntimeError(f"ViTMAEModel kept {out.last_hidden_state.shape[1] - 1} of {n} patches: "
                                   "its config's mask_ratio is not 0")
            return out

    return UnmaskedMAE


@BACKBONES.register("mae_vit")
class MaeViT(DinoViTS16):
    """The last layer of an MAE ViT encoder (transformers ``ViTMAEModel`` directory, e.g.
    facebook/vit-mae-base or a ``ViTMAEForPreTraining`` save, whose decoder is left out), per valid
    frame: the mean of the patch tokens (``pool: mean``, default: MAE's pretraining gives [CLS] no
    objective of its own, and its fine-tuning recipe pools the patches) or [CLS] (``pool: cls``).
    ``dim`` is the checkpoint's hidden size (768 for ViT-B). Crops are resized to the config's
    image size and normalised with ``mean``/``std`` (ImageNet's, as MAE's image processor).
    """

    def __init__(self, *, weights: str = "mae_vit", pool: str = "mean", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 max_frames: int = 0) -> None:
        super().__init__(weights=weights, pool=pool, mean=mean, std=std, max_frames=max_frames)
        model_type = read_config(self._dir).get("model_type")
        if model_type != "vit_mae":
            raise ValueError(f"{self._dir}: config.json has model_type {model_type!r}, mae_vit needs 'vit_mae'")

    def _model(self):
        if self._loaded is None:
            import torch
            from transformers import ViTMAEConfig, ViTMAEModel

            device = pick_device(self.device)
            config = ViTMAEConfig.from_pretrained(str(self._dir), local_files_only=True)
            config.mask_ratio = 0.0
            mae, info = from_local(ViTMAEModel, self._dir, config=config, output_loading_info=True)
            if info["missing_keys"]:  # from_pretrained would initialise them at random, silently
                raise ValueError(f"{self._dir}: the checkpoint lacks ViTMAEModel weights: missing keys "
                                 f"{sorted(info['missing_keys'])}, unexpected keys {sorted(info['unexpected_keys'])}")
            model = unmasked_mae_class()(mae).eval().to(device)
            mean = torch.tensor(self.params["mean"], device=device).view(1, 3, 1, 1)
            std = torch.tensor(self.params["std"], device=device).view(1, 3, 1, 1)
            self._loaded = (model, device, mean, std)
        return self._loaded
