"""Readers that turn an ABAW data set on disk into a manifest (one row per clip).

A manifest has the columns ``id``, ``split``, ``subject``, ``media`` followed by the
task's target columns; see :mod:`affectflow.datasets.emi`.
"""

from affectflow.datasets.emi import (
    MANIFEST_COLUMNS,
    DatasetError,
    read_emi_manifest,
    read_manifest,
    write_manifest,
)

__all__ = [
    "MANIFEST_COLUMNS",
    "DatasetError",
    "read_emi_manifest",
    "read_manifest",
    "write_manifest",
]
