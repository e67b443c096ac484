"""Feature backbones by versioned name, and the stage that caches their output per shard.

Importing the package registers the built-in backbones (``affectflow.features.backbones``);
the registry itself (``affectflow.features.registry``) imports none of them.
"""

from affectflow.features import backbones  # noqa: F401  (registers the built-in backbones)
from affectflow.features.registry import BACKBONES, create_backbone, list_backbones

__all__ = ["BACKBONES", "create_backbone", "list_backbones"]
