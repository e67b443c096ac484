"""The registry of temporal models (a module of its own so model modules can import it).

A model factory that reads several fused backbones declares it with :func:`multimodal`; the
training job then gives it the backbones' widths as ``modality_dims`` (:func:`takes_modality_dims`).
"""

from __future__ import annotations

from affectflow.registry import Registry

MODELS: Registry = Registry("temporal model")


def multimodal(factory):
    """Mark a model factory (function or class) as taking ``modality_dims``, the widths of the
    fused backbones in the order they are concatenated."""
    factory.takes_modality_dims = True
    return factory


def takes_modality_dims(name: str) -> bool:
    """Whether the model registered as ``name`` is :func:`multimodal` (takes ``modality_dims``)."""
    return bool(getattr(MODELS.get(name), "takes_modality_dims", False))
