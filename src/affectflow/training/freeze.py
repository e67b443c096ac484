"""Partial fine-tuning: freeze parts of a model by name or depth, keep frozen BatchNorm layers'
statistics fixed, and give the encoder (backbone) its own learning rate.

``freeze`` and ``param_groups`` read parameter names as ``model.named_parameters()`` writes them,
e.g. ``encoder.trunk.0.weight`` for a :class:`~affectflow.models.finetune.FinetuneModel`.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

__all__ = ["freeze", "keep_frozen_norms_in_eval", "param_groups"]

# How many valid prefixes an error about an unknown one lists.
_SHOWN = 12


def _matches(name: str, prefix: str) -> bool:
    # At a dot boundary: "encoder.trunk.1" must not catch "encoder.trunk.10".
    return name == prefix or name.startswith(prefix + ".")


def _nearby_prefixes(names: list[str], prefix: str) -> list[str]:
    """Valid prefixes next to an unknown ``prefix``: the children of its longest valid ancestor
    (the top level when it has none)."""
    parts = prefix.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        ancestor = ".".join(parts[:cut])
        under = [n for n in names if not ancestor or _matches(n, ancestor)]
        if under:
            depth = cut + 1
            return list(dict.fromkeys(".".join(n.split(".")[:depth]) for n in under))
    return []


def freeze(module: nn.Module, *, names: Iterable[str] = (), depth: int | None = None) -> list[str]:
    """Stop gradients into part of ``module``; returns the qualified names of the frozen parameters.

    ``names``: prefixes of qualified parameter names, matched at dot boundaries
    (``"encoder.trunk.0"``, ``"encoder.wav2vec2.feature_extractor"``); a prefix that matches no
    parameter is a ValueError listing valid ones nearby. ``depth``: also freeze the first ``depth``
    top-level children of ``module.encoder``, in registration order (parameters held by the encoder
    itself, not by a child, are left as they are). Frozen BatchNorm layers are put in eval mode;
    call :func:`keep_frozen_norms_in_eval` again after every ``model.train()``.
    """
    params = dict(module.named_parameters())
    prefixes = [names] if isinstance(names, str) else list(names)
    for prefix in prefixes:
        if not any(_matches(n, prefix) for n in params):
            nearby = _nearby_prefixes(list(params), prefix)
            raise ValueError(f"freeze: no parameter is named {prefix!r} or below it; valid prefixes there: "
                             f"{', '.join(nearby[:_SHOWN])}{' ...' if len(nearby) > _SHOWN else ''}")
    if depth is not None:
        encoder = getattr(module, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise ValueError(f"freeze: depth needs a model with an encoder; {type(module).__name__} has none")
        children = [name for name, _ in encoder.named_children()]
        if not 0 <= depth <= len(children):
            raise ValueError(f"freeze: depth {depth} out of range: the encoder has {len(children)} top-level "
                             f"children ({', '.join(children)})")
        prefixes += [f"encoder.{name}" for name in children[:depth]]
    frozen = [n for n, p in params.items() if any(_matches(n, prefix) for prefix in prefixes)]
    for name in frozen:
        params[name].requires_grad_(False)
    if module.training:
        keep_frozen_norms_in_eval(module)
    return frozen


def keep_frozen_norms_in_eval(model: nn.Module) -> list[str]:
    """Put every BatchNorm layer whose affine parameters are all frozen in eval mode, so that its
    running statistics stay those it was trained with; returns their names. Call it after each
    ``model.train()`` (which puts them back in training mode). BatchNorm layers without affine
    parameters cannot tell and are left as they are."""
    names = []
    for name, layer in model.named_modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            own = list(layer.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                layer.eval()
                names.append(name)
    return names


def param_groups(model: nn.Module, *, lr: float, lr_backbone: float | None = None,
                 weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: the trainable parameters under ``model.encoder`` at
    ``lr_backbone`` (default ``lr``), the other trainable ones at ``lr``. Frozen parameters are
    left out, as are empty groups; each group has a ``name`` ("backbone" or "head") for logs."""
    encoder = getattr(model, "encoder", None)
    in_encoder = {id(p) for p in encoder.parameters()} if isinstance(encoder, nn.Module) else set()
    backbone, head = [], []
    for p in model.parameters():  # each shared parameter once
        if p.requires_grad:
            (backbone if id(p) in in_encoder else head).append(p)
    groups = [{"name": "backbone", "params": backbone, "lr": lr if lr_backbone is None else lr_backbone,
               "weight_decay": weight_decay},
              {"name": "head", "params": head, "lr": lr, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]
