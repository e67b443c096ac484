"""Image backbones in PyTorch on face crops: AffectNet ResNet18 (pooled and feature maps), and a
generic entry for any torchvision or timm architecture loaded from a local checkpoint.

Checkpoints are state_dicts loaded with ``weights_only=True`` (never pickled modules); the
classifier head is dropped, so a checkpoint trained for 7 or 8 expression classes loads as is.
On CUDA the forward runs under autocast (bf16 where supported, else fp16) in channels_last.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from affectflow.features.base import CropBackbone, check_positive
from affectflow.features.registry import BACKBONES
from affectflow.features.weights import resolve_weights, weights_sha256
from affectflow.runtime.device import pick_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Wrappers that training scripts put around a state_dict.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")


def load_state_dict(path) -> dict:
    """A state_dict from a checkpoint file, unwrapped from {"state_dict": ...} and "module." prefixes."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise ValueError(f"{path}: not a state_dict of tensors")
    # DataParallel / DistributedDataParallel prefix every key with "module."
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_without_head(model, state: dict, *, head_prefixes: tuple[str, ...], path) -> None:
    """Load ``state`` into ``model`` whose head was removed; only head keys may be left over."""
    result = model.load_state_dict(state, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(head_prefixes)]
    if result.missing_keys or unexpected:
        raise ValueError(
            f"{path}: checkpoint does not fit the architecture: missing {result.missing_keys[:5]}, "
            f"unexpected {unexpected[:5]} (of {len(result.missing_keys)} missing, {len(unexpected)} unexpected)"
        )


class TorchImageBackbone(CropBackbone):
    """Shared preprocessing and batched forward: uint8 crops -> resized, normalised float tensor."""

    device = "auto"  # the stage sets it from the runtime options

    def __init__(self, *, weights: str, input_size: int, mean, std, max_frames: int) -> None:
        check_positive("input_size", input_size)
        check_positive("max_frames", max_frames, allow_zero=True)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (RGB) and std > 0, not mean={mean!r} std={std!r}")
        self._weights = resolve_weights(weights)
        self.params = {"weights": weights, "input_size": int(input_size), "mean": [float(v) for v in mean],
                       "std": [float(v) for v in std], "max_frames": int(max_frames)}
        # kept apart from params: a subclass whose input is fixed by its architecture records only
        # what it takes (the workflow rebuilds a backbone from its recorded params)
        self._input_size, self._mean, self._std = self.params["input_size"], self.params["mean"], self.params["std"]
        self._loaded = None

    def provenance(self) -> dict:
        """The checkpoint's sha256 and the torch/torchvision versions."""
        return {"weights_sha256": weights_sha256(self._weights), "package_version": self._versions()}

    def _versions(self) -> str:
        return f"torch {importlib.metadata.version('torch')} torchvision {importlib.metadata.version('torchvision')}"

    def build(self):
        """The torch module, weights loaded, mapping (N, 3, S, S) to (N, ...)."""
        raise NotImplementedError

    def model(self):
        """The module on its device, in eval mode (built on first use)."""
        if self._loaded is None:
            import torch

            device = pick_device(self.device)
            module = self.build().eval().to(device)
            if device.startswith("cuda"):
                module = module.to(memory_format=torch.channels_last)
            mean = torch.tensor(self._mean, device=device).view(1, 3, 1, 1)
            std = torch.tensor(self._std, device=device).view(1, 3, 1, 1)
            self._loaded = (module, device, mean, std)
        return self._loaded

    def embed(self, images) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB crops -> (N, dim) float32."""
        import torch

        module, device, mean, std = self.model()
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        x = x.to(device, non_blocking=True)  # from pinned memory (the stage pins on CUDA): asynchronous
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        size = self._input_size
        if x.shape[-2:] != (size, size):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                                antialias=True)
        x = (x - mean) / std
        cuda = device.startswith("cuda")
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
        with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=dtype, enabled=cuda):
            y = module(x)
        return y.float().reshape(len(y), -1).cpu().numpy()


def _resnet18_trunk(path):
    """torchvision's ResNet18 with the checkpoint's weights and the fc layer replaced by identity."""
    import torch
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Identity()
    load_without_head(model, load_state_dict(path), head_prefixes=("fc.",), path=path)
    return model


@BACKBONES.register("resnet18_pool512")
class ResNet18Pool512(TorchImageBackbone):
    """ResNet18 (torchvision architecture) from a local AffectNet checkpoint: the 512-d global
    average pool before the classifier, per valid frame (paper 000)."""

    dim = 512

    def __init__(self, *, weights: str = "resnet18_affectnet", input_size: int = 112,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, max_frames: int = 0) -> None:
        super().__init__(weights=weights, input_size=input_size, mean=mean, std=std, max_frames=max_frames)

    def build(self):
        return _resnet18_trunk(self._weights)


def _conv_out(size: int) -> int:
    # a 3x3 (or 7x7, or max-pool) stride-2 layer with "same" padding: ceil(size / 2)
    return (size - 1) // 2 + 1


@BACKBONES.register("resnet18_maps")
class ResNet18Maps(TorchImageBackbone):
    """The feature map of an AffectNet ResNet18 after stage ``stage`` (conv1 + layer1..layer<stage>),
    per valid frame, flattened (h, w, c) row-major: reshape to (h * w, c) tokens for paper 001's
    spatial-attention model. Stage 3 at 112 px gives 7 x 7 x 256."""

    CHANNELS = {1: 64, 2: 128, 3: 256, 4: 512}

    def __init__(self, *, weights: str = "resnet18_affectnet", stage: int = 3, input_size: int = 112,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, max_frames: int = 32) -> None:
        if stage not in self.CHANNELS:
            raise ValueError(f"stage must be one of 1, 2, 3, 4, not {stage!r}")
        super().__init__(weights=weights, input_size=input_size, mean=mean, std=std, max_frames=max_frames)
        self.params["stage"] = stage
        side = _conv_out(_conv_out(input_size))  # conv1 then the max-pool: a quarter
        for _ in range(stage - 1):  # layer2..layer4 halve again
            side = _conv_out(side)
        self.map_shape = (side, side, self.CHANNELS[stage])
        self.dim = side * side * self.CHANNELS[stage]

    def build(self):
        import torch

        trunk = _resnet18_trunk(self._weights)
        layers = [trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool,
                  *[getattr(trunk, f"layer{i}") for i in range(1, self.params["stage"] + 1)]]

        class Maps(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = torch.nn.Sequential(*layers)

            def forward(self, x):
                return self.body(x).permute(0, 2, 3, 1).flatten(1)  # (N, h * w * c), channels last

        return Maps()


_TORCHVISION_HEADS = ("fc", "classifier", "head", "heads")


@BACKBONES.register("image_local")
class LocalImageModel(TorchImageBackbone):
    """Any torchvision (``arch: densenet121``) or timm (``arch: timm/vit_base_patch16_224.mae``)
    image model from a local state_dict, classifier removed: the pooled features per valid frame.

    The recipes of papers 003 and 004 read their DenseNet features this way (a MobileNet would be
    read the same way; IResNet100 and a transformers MAE have backbones of their own,
    ``iresnet100_512`` and ``mae_vit``). ``dim`` is known once the model is built (the first time it
    is asked for).
    """

    def __init__(self, *, arch: str = "", weights: str = "", input_size: int = 224, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, max_frames: int = 0) -> None:
        if not arch:
            raise ValueError("image_local needs arch: a torchvision model name (densenet121, "
                             "mobilenet_v3_large, ...) or timm/<name>")
        if not arch.startswith("timm/"):
            import torchvision

            if arch not in torchvision.models.list_models():
                raise ValueError(f"arch {arch!r} is not a torchvision model; known: "
                                 f"{', '.join(torchvision.models.list_models())} (or timm/<name>)")
        super().__init__(weights=weights, input_size=input_size, mean=mean, std=std, max_frames=max_frames)
        self.params = {"arch": arch, **self.params}
        self._dim = None

    def _versions(self) -> str:
        if self.params["arch"].startswith("timm/"):
            return f"{super()._versions()} timm {importlib.metadata.version('timm')}"
        return super()._versions()

    @property
    def dim(self) -> int:
        if self._dim is None:
            import torch

            module, device, _, _ = self.model()
            size = self.params["input_size"]
            with torch.inference_mode():
                self._dim = int(module(torch.zeros(1, 3, size, size, device=device)).reshape(1, -1).shape[1])
        return self._dim

    def build(self):
        import torch

        arch = self.params["arch"]
        state = load_state_dict(self._weights)
        if arch.startswith("timm/"):
            import timm

            model = timm.create_model(arch.removeprefix("timm/"), pretrained=False, num_classes=0)
            head = model.default_cfg.get("classifier", "head")
            heads = (head,) if isinstance(head, str) else tuple(head)
            load_without_head(model, state, head_prefixes=tuple(f"{h}." for h in heads), path=self._weights)
            return model
        import torchvision

        model = torchvision.models.get_model(arch, weights=None)
        removed = []
        for name in _TORCHVISION_HEADS:
            if hasattr(model, name):
                setattr(model, name, torch.nn.Identity())
                removed.append(f"{name}.")
                break
        load_without_head(model, state, head_prefixes=tuple(removed), path=self._weights)
        return model
