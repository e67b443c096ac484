"""Per-job resource requests (cpus, mem_mb, runtime, gpu) from the config's ``resources:`` section.

Jobs are per shard, so what a job needs grows with the clips in its shard: each of ``cpus``,
``mem_mb`` and ``runtime`` (minutes) is ``base + per_clip * clips``, rounded up and capped by its
``max_*``. The shard rules (media, faces, features) count the clips of one shard; ``train``
reads every shard and counts all clips. ``gpu`` is the number of GPUs a job asks for (GPU rules
default to 1; 0 sends the rule to CPU nodes). The Snakefile turns these into ``threads`` and
``resources`` of the rules, which a cluster profile turns into sbatch options and ``--cores`` /
``--resources gpu=N`` bound on one box.

The DAG is built before the manifest exists, so the clips per shard are estimated from the
config: ``resources.clips_per_shard`` when given, else the demo's clip count, else the media
files under ``<root>/raw``, divided by ``n_shards``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

__all__ = ["DEFAULTS", "RULES", "estimate_clips_per_shard", "job_resources"]

#: Defaults per rule; a config entry overrides single keys.
DEFAULTS: dict[str, dict[str, float]] = {
    "media": dict(gpu=0, cpus=1, mem_mb=1000, mem_mb_per_clip=5, runtime=10, runtime_per_clip=0.05),
    "faces": dict(gpu=1, cpus=1, mem_mb=2000, mem_mb_per_clip=10, runtime=10, runtime_per_clip=0.2),
    "features": dict(gpu=1, cpus=1, mem_mb=2000, mem_mb_per_clip=5, runtime=10, runtime_per_clip=0.1),
    "train": dict(gpu=1, cpus=1, mem_mb=2000, mem_mb_per_clip=1, runtime=10, runtime_per_clip=0.01),
}
RULES = tuple(DEFAULTS)
SCALED = ("cpus", "mem_mb", "runtime")
KEYS = frozenset({"gpu", *SCALED, *(f"{k}_per_clip" for k in SCALED), *(f"max_{k}" for k in SCALED)})
MEDIA_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".wav")
FALLBACK_CLIPS_PER_SHARD = 100


def job_resources(rule: str, settings: Mapping | None = None, *, clips: int) -> dict[str, int]:
    """``{"gpu", "cpus", "mem_mb", "runtime"}`` for one job of ``rule`` that handles ``clips`` clips.

    >>> job_resources("faces", {"mem_mb_per_clip": 100, "max_mem_mb": 3000}, clips=20)["mem_mb"]
    3000
    """
    if rule not in DEFAULTS:
        raise ValueError(f"no resource defaults for rule {rule!r}; known: {', '.join(RULES)}")
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 0:
        raise ValueError(f"clips must be an integer >= 0, not {clips!r}")
    settings = dict(settings or {})
    unknown = sorted(set(settings) - KEYS)
    if unknown:
        raise ValueError(f"unknown resources.{rule} key(s) {unknown}; known: {sorted(KEYS)}")
    spec = {**DEFAULTS[rule], **settings}
    out = {"gpu": int(spec["gpu"])}
    for key in SCALED:
        value = math.ceil(spec[key] + spec.get(f"{key}_per_clip", 0) * clips)
        cap = spec.get(f"max_{key}")
        if cap is not None:
            value = min(value, int(cap))
        out[key] = max(1, int(value))
    return out


def estimate_clips_per_shard(dataset: Mapping, resources: Mapping | None = None) -> int:
    """Clips per shard for sizing jobs before the manifest exists (see the module docstring)."""
    resources = resources or {}
    if resources.get("clips_per_shard"):
        return int(resources["clips_per_shard"])
    n_shards = int(dataset.get("n_shards", 8))
    if "demo" in dataset:
        total = int(dataset["demo"].get("n_clips", 72))
    elif dataset.get("task") in ("va", "au"):
        # Aff-Wild2: one manifest row per annotation track (train and validation; the test
        # tracks add about a quarter, which the caps and per-clip figures absorb)
        challenge = {"va": "VA_Estimation_Challenge", "au": "AU_Detection_Challenge"}[dataset["task"]]
        annotations = os.path.join(dataset["root"], "Annotations", challenge)
        total = sum(name.endswith(".txt") for _, _, names in os.walk(annotations) for name in names)
        if not total:
            return FALLBACK_CLIPS_PER_SHARD
    else:
        raw = os.path.join(dataset["root"], "raw")
        try:
            total = sum(1 for name in os.listdir(raw) if name.lower().endswith(MEDIA_SUFFIXES))
        except OSError:
            return FALLBACK_CLIPS_PER_SHARD
    return max(1, math.ceil(total / n_shards))
