"""The features stage: run one backbone over one shard and cache (T, D) per clip in HDF5."""

from __future__ import annotations

import copy
import functools
import json
import logging
import os

import numpy as np

from affectflow.features.registry import create_backbone
from affectflow.h5store import ShardWriter, iter_clips, read_file_attrs

log = logging.getLogger(__name__)


def backbone_signature(name: str, params: dict) -> dict:
    """Everything the backbone's output depends on: name, parameters, weights checksum, version.

    The workflow passes this as rule ``params`` so that Snakemake re-runs exactly the jobs of a
    backbone whose signature changed.
    """
    backbone = create_backbone(name, **params)
    return {"backbone": name, "modality": backbone.modality, "params": backbone.params, **backbone.provenance()}


def build_feature_shard(name: str, params: dict, in_shard: str | os.PathLike, out_path: str | os.PathLike) -> int:
    """Extract backbone ``name`` for every clip of ``in_shard``; return the number of clips.

    Clips with nothing to extract (no face, no audio) get a (0, D) array, never NaN.
    """
    backbone = create_backbone(name, **params)
    file_attrs = {"stage": "features", "backbone": name, "params": backbone.params, "dim": backbone.dim,
                  **backbone.provenance()}
    source_attrs = read_file_attrs(in_shard)
    n = 0
    with ShardWriter(out_path, file_attrs=file_attrs) as writer:
        for clip_id, arrays, attrs in iter_clips(in_shard):
            if backbone.modality == "visual":
                features, timestamps = backbone.extract(arrays["crops"], arrays["valid"], arrays["timestamps"])
            else:
                features, timestamps = backbone.extract(arrays["audio"], int(source_attrs["sample_rate"]))
            if not np.isfinite(features).all():
                raise ValueError(f"{in_shard}: clip {clip_id}: backbone {name} produced non-finite values")
            writer.add_clip(clip_id, {"features": features, "timestamps": timestamps},
                            {"qc_status": attrs.get("qc_status", "ok"), "n_rows": len(features)})
            n += 1
            log.info("clip %s: %d rows", clip_id, len(features))
    return n


@functools.cache
def _signature_from_json(name: str, params_json: str) -> dict:
    return backbone_signature(name, json.loads(params_json))


def cached_signature(name: str, params: dict) -> dict:
    """``backbone_signature`` memoised per (name, params): the DAG asks once per shard."""
    # A deep copy: the nested ``params`` dict must not be shared with the cached value.
    return copy.deepcopy(_signature_from_json(name, json.dumps(params, sort_keys=True)))
