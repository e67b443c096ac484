"""Feature backbones by versioned name, and the stage that caches their output per shard."""

from affectflow.features.registry import BACKBONES, create_backbone, list_backbones

__all__ = ["BACKBONES", "create_backbone", "list_backbones"]
