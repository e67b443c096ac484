"""IResNet (the ArcFace / insightface ``arcface_torch`` face-recognition ResNet) as a crop backbone.

Papers 003 and 004 take 512-d embeddings from an IResNet100 fine-tuned for expression or facial
action units. The architecture is neither in torchvision nor in timm, so it is defined here, with
the module names of the public ``arcface_torch`` checkpoints (``conv1``, ``bn1``, ``prelu``,
``layer1.0.bn1`` ... ``layer1.0.downsample.0``, ``bn2``, ``fc``, ``features``) so that those
state_dicts load unchanged.

Layout: a stride-1 3x3 stem (64 channels, BN, PReLU) on a 112 x 112 crop, four stages of
"improved" basic blocks (BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus a 1x1
conv + BN shortcut where the shape changes), each stage halving the side (112 -> 7), then
BN -> dropout -> flatten -> Linear(512 * 7 * 7, 512) -> BatchNorm1d: the 512-d embedding.
"""

from __future__ import annotations

import re

from affectflow.features.backbones.torch_image import (
    TorchImageBackbone,
    load_state_dict,
)
from affectflow.features.registry import BACKBONES

# Blocks per stage for each depth (the arcface_torch r18 / r50 / r100 configurations).
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
STAGE_WIDTHS = (64, 128, 256, 512)
INPUT_SIZE = 112  # the fc layer is sized for a 7 x 7 map: 112 / 2**4
EMBEDDING_DIM = 512
BN_EPS = 1e-5
# arcface_torch normalises with (x / 255 - 0.5) / 0.5
IRESNET_MEAN = (0.5, 0.5, 0.5)
IRESNET_STD = (0.5, 0.5, 0.5)


def build_iresnet(depth: int = 100, *, dropout: float = 0.0):
    """An IResNet of ``depth`` 18, 50 or 100 (randomly initialised) mapping (N, 3, 112, 112) to
    (N, 512) embeddings; parameter names match the arcface_torch checkpoints."""
    import torch
    from torch import nn

    if depth not in IRESNET_LAYERS:
        raise ValueError(f"depth must be one of {', '.join(map(str, IRESNET_LAYERS))}, not {depth!r}")

    def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)

    class IBasicBlock(nn.Module):
        """Pre-activation-style block; the stride sits on the second conv, no activation after the sum."""

        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS)
            self.conv1 = conv3x3(cin, cout)
            self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
            self.prelu = nn.PReLU(cout)
            self.conv2 = conv3x3(cout, cout, stride)
            self.bn3 = nn.BatchNorm2d(cout, eps=BN_EPS)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                                                nn.BatchNorm2d(cout, eps=BN_EPS))

        def forward(self, x):
            out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            shortcut = x if self.downsample is None else self.downsample(x)
            return out + shortcut

    class IResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.depth = depth
            self.conv1 = conv3x3(3, STAGE_WIDTHS[0])
            self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0], eps=BN_EPS)
            self.prelu = nn.PReLU(STAGE_WIDTHS[0])
            cin = STAGE_WIDTHS[0]
            for i, (blocks, width) in enumerate(zip(IRESNET_LAYERS[depth], STAGE_WIDTHS), start=1):
                # every stage, the first included, halves the side: 112 -> 56 -> 28 -> 14 -> 7
                stage = [IBasicBlock(cin, width, 2)] + [IBasicBlock(width, width, 1) for _ in range(blocks - 1)]
                setattr(self, f"layer{i}", nn.Sequential(*stage))
                cin = width
            side = INPUT_SIZE // 2 ** len(STAGE_WIDTHS)
            self.bn2 = nn.BatchNorm2d(cin, eps=BN_EPS)
            self.dropout = nn.Dropout(p=dropout)
            self.fc = nn.Linear(cin * side * side, EMBEDDING_DIM)
            self.features = nn.BatchNorm1d(EMBEDDING_DIM, eps=BN_EPS)
            # arcface_torch freezes the embedding BN's scale at 1; a checkpoint still carries it
            nn.init.constant_(self.features.weight, 1.0)
            self.features.weight.requires_grad = False

        def forward(self, x):
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            x = self.dropout(torch.flatten(self.bn2(x), 1))
            return self.features(self.fc(x))

    return IResNet()


def checkpoint_layers(state: dict) -> tuple[int, ...]:
    """Blocks per stage found in a state_dict's ``layer<i>.<j>.`` keys (for error messages)."""
    blocks: dict[int, set[int]] = {}
    for key in state:
        match = re.match(r"layer(\d+)\.(\d+)\.", key)
        if match:
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    return tuple(len(blocks[i]) for i in sorted(blocks))


def load_iresnet(path, depth: int):
    """An IResNet of ``depth`` with the checkpoint at ``path`` loaded strictly (every key, every
    shape); a checkpoint of another architecture or depth fails naming the file and the mismatch."""
    state = load_state_dict(path)
    model = build_iresnet(depth)
    expected = model.state_dict()
    # BatchNorm restores a missing num_batches_tracked itself (older checkpoints lack it)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
                   if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        found = checkpoint_layers(state)
        named = {v: k for k, v in IRESNET_LAYERS.items()}.get(found)
        hint = ""
        if not found:
            hint = "; it has no layer<i>.<j> blocks: not an IResNet"
        elif named and named != depth:
            hint = f"; its blocks per stage {list(found)} are iresnet{named}'s: set depth={named}"
        problems = [f"{len(items)} {what} {items[:3]}" for what, items in
                    (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", wrong_shape)) if items]
        raise ValueError(f"{path}: checkpoint does not fit iresnet{depth} (an arcface_torch IResNet state_dict "
                         f"is expected): {'; '.join(problems)}{hint}")
    model.load_state_dict(state, strict=True)
    return model


@BACKBONES.register("iresnet100_512")
class IResNet512(TorchImageBackbone):
    """ArcFace-style IResNet (``depth`` 100 by default; 18 and 50 also load) from a local
    state_dict, e.g. one fine-tuned for expression or facial action units (papers 003, 004): the
    512-d embedding (fc + BatchNorm1d output) per valid frame. Crops are resized to 112 x 112
    and normalised as arcface_torch does, (x / 255 - 0.5) / 0.5."""

    dim = EMBEDDING_DIM

    def __init__(self, *, weights: str = "iresnet100_fau", depth: int = 100, max_frames: int = 0) -> None:
        if isinstance(depth, bool) or depth not in IRESNET_LAYERS:
            raise ValueError(f"depth must be one of {', '.join(map(str, IRESNET_LAYERS))}, not {depth!r}")
        super().__init__(weights=weights, input_size=INPUT_SIZE, mean=IRESNET_MEAN, std=IRESNET_STD,
                         max_frames=max_frames)
        # Its parameters are what it takes: the workflow rebuilds it from them (input size and
        # normalisation are the architecture's, not options).
        self.params = {"weights": weights, "depth": int(depth), "max_frames": int(max_frames)}

    def build(self):
        return load_iresnet(self._weights, self.params["depth"])
