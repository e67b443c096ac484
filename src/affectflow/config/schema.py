"""The config's JSON schema (``workflow/schemas/config.schema.yaml``): the one place defaults live.

The workflow validates its config with Snakemake's ``validate(..., set_default=True)``;
:func:`with_defaults` does the same outside Snakemake (tests, benchmarks, notebooks), so code
that reads a config can index it plainly and never carries a second default.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path

import yaml

# The repository root: this file is src/affectflow/config/schema.py (resolved, because job
# scripts import the package through a symlink).
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


@functools.cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def load_schema() -> dict:
    """A copy of the config schema."""
    return copy.deepcopy(_schema())


def with_defaults(config: Mapping) -> dict:
    """A copy of ``config``, validated against the schema, with every schema default filled in.

    Raises ``jsonschema.ValidationError`` naming the offending key, as the workflow would.
    """
    import jsonschema
    from referencing import Registry, Resource

    schema = load_schema()
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        # Same rule as Snakemake's validate(set_default=True): a missing key takes its default,
        # then the nested object is validated (and its own defaults filled in).
        for name, prop in properties.items():
            if isinstance(instance, dict) and "default" in prop:
                instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    validator_class = jsonschema.validators.extend(base, {"properties": set_defaults})
    registry = Registry().with_resource(SCHEMA_PATH.as_uri(), Resource.from_contents(schema))
    schema["$id"] = SCHEMA_PATH.as_uri()
    out = copy.deepcopy(dict(config))
    validator_class(schema, registry=registry).validate(out)
    return out


def section_defaults(*path: str) -> dict:
    """The defaults the schema gives the object at ``path`` (e.g. ``("resources", "faces")``).

    A ``"*"`` in ``path`` stands for any key of a mapping (its ``additionalProperties``), e.g.
    ``("features", "*")``: the defaults of every ``features`` entry.
    """
    node = _schema()
    for key in path:
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
    return {k: copy.deepcopy(v["default"]) for k, v in node.get("properties", {}).items() if "default" in v}
