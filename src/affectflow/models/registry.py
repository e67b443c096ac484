"""The registry of temporal models (a module of its own so model modules can import it)."""

from __future__ import annotations

from affectflow.registry import Registry

MODELS: Registry = Registry("temporal model")
