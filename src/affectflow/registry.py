"""A small registry by versioned name, shared by face detectors, backbones, models and ensemblers.

A registry is a leaf: it imports none of its entries. A family's package ``__init__`` imports
its built-in modules, each of which registers its names. :func:`declared_names` reads the names
a family registers from its source, without importing it (the workflow's start-up checks must
not import torch, which the temporal models need).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps versioned names (e.g. ``"mfcc128@1"``) to factories.

    Names never change meaning: a changed implementation gets a new name.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a name can be registered once."""

        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorate

    def get(self, name: str) -> T:
        """The entry for ``name``; an unknown name fails listing the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _register_calls(tree: ast.Module, registry: str) -> tuple[list[ast.Call], set[str]]:
    """Calls of ``<registry>.register(...)`` and the module-level functions that make such a call."""
    calls, helpers = [], set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == registry):
            calls.append(node)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(call in calls for call in ast.walk(node)):
            helpers.add(node.name)
    return calls, helpers


def declared_names(package: str, registry: str) -> list[str]:
    """The names the modules of ``package`` register in ``registry``, read from their source.

    Counts ``@REGISTRY.register("name")`` and module-level helpers that call
    ``REGISTRY.register(name)`` with their first argument, called with a string literal (such as
    ``_factory("tcn", ...)``). Nothing of ``package`` is imported.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package!r} is not a package")
    names = set()
    for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        calls, helpers = _register_calls(tree, registry)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            first = node.args[0]
            helper_call = isinstance(node.func, ast.Name) and node.func.id in helpers
            if (node in calls or helper_call) and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return sorted(names)


def declared_with(package: str, registry: str, decorator: str) -> list[str]:
    """The names registered in ``registry`` (``@REGISTRY.register("name")``) by a function or class that
    also carries ``@decorator`` (e.g. the models marked ``@multimodal``), read from the source of
    ``package``'s modules; nothing is imported."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package!r} is not a package")
    names = set()
    for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.ClassDef):
                continue
            marks = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
            if decorator not in marks:
                continue
            for d in node.decorator_list:
                if (isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "register"
                        and isinstance(d.func.value, ast.Name) and d.func.value.id == registry
                        and d.args and isinstance(d.args[0], ast.Constant)):
                    names.add(d.args[0].value)
    return sorted(names)
