"""Per-job resource requests (cpus, mem_mb, runtime, gpu) from the config's ``resources:`` section.

Jobs are per shard, so what a job needs grows with the clips in its shard: each of ``cpus``,
``mem_mb`` and ``runtime`` (minutes) is ``base + per_clip * clips``, rounded up and capped by its
``max_*``. The shard rules (media, faces, features) count the clips of one shard; ``train``
reads every labelled shard and counts ``n_shards`` shards' clips (:func:`rule_resources`, which
the workflow's ``common.smk`` calls; ``predict_test`` is sized as ``train``). A train job's
memory is the exception (:data:`FLAT_MEMORY`): it reads its features through a memory-mapped
store (:mod:`affectflow.training.track_store`) and holds what its model and a batch need, so its
``mem_mb`` is the configured value, whatever the clips; ``mem_mb_per_clip`` is refused there. ``gpu`` is the
number of GPUs a job asks for (GPU rules default to 1; 0 sends the rule to CPU nodes). The rules
take these as their ``threads`` and ``resources``, which a cluster profile turns into sbatch
options and ``--cores`` / ``--resources gpu=N`` bound on one box.

The DAG is built before the manifest exists, so the clips per shard are estimated from the
config: ``resources.clips_per_shard`` when given, else the demo's clip count, else the clips the
data set's reader counts (media files under ``raw/``, Aff-Wild2 annotation tracks), over
``n_shards``. For EMI and ERI the count includes the test clips, which have shards of their own:
the estimate errs on the large side (a job that asks for too little memory is killed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from affectflow.config.schema import section_defaults

__all__ = ["FLAT_MEMORY", "READS_EVERY_SHARD", "RULES", "estimate_clips_per_shard", "job_resources", "rule_resources"]

#: The rules whose requests scale with the clips a job handles (their defaults: the schema).
RULES = ("media", "faces", "features", "train")
#: The rules whose one job reads every shard (the others handle one shard each).
READS_EVERY_SHARD = ("train",)
#: The rules whose memory does not grow with their clips (the train job's features are memory-mapped).
FLAT_MEMORY = ("train",)
SCALED = ("cpus", "mem_mb", "runtime")
KEYS = frozenset({"gpu", *SCALED, *(f"{k}_per_clip" for k in SCALED), *(f"max_{k}" for k in SCALED)})
FALLBACK_CLIPS_PER_SHARD = 100


def job_resources(rule: str, settings: Mapping | None = None, *, clips: int) -> dict[str, int]:
    """``{"gpu", "cpus", "mem_mb", "runtime"}`` for one job of ``rule`` that handles ``clips`` clips.

    >>> job_resources("faces", {"mem_mb_per_clip": 100, "max_mem_mb": 3000}, clips=20)["mem_mb"]
    3000
    """
    if rule not in RULES:
        raise ValueError(f"no resource defaults for rule {rule!r}; known: {', '.join(RULES)}")
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 0:
        raise ValueError(f"clips must be an integer >= 0, not {clips!r}")
    settings = dict(settings or {})
    unknown = sorted(set(settings) - KEYS)
    if unknown:
        raise ValueError(f"unknown resources.{rule} key(s) {unknown}; known: {sorted(KEYS)}")
    if rule in FLAT_MEMORY and settings.get("mem_mb_per_clip"):
        raise ValueError(f"resources.{rule}.mem_mb_per_clip: a {rule} job's memory does not grow with the clips (it "
                         f"reads its features from a memory-mapped file in $TMPDIR); set resources.{rule}.mem_mb for "
                         "its model and batch")
    # The schema's defaults for the rule, under the given keys (a validated config has them all).
    spec = {**section_defaults("resources", rule), **settings}
    out = {"gpu": int(spec["gpu"])}
    for key in SCALED:
        value = math.ceil(spec[key] + spec.get(f"{key}_per_clip", 0) * clips)
        cap = spec.get(f"max_{key}")
        if cap is not None:
            value = min(value, int(cap))
        out[key] = max(1, int(value))
    return out


def rule_resources(config: Mapping, *, shard_clips: Sequence[int] | None = None) -> dict[str, dict[str, int]]:
    """``{rule: {"gpu", "cpus", "mem_mb", "runtime"}}`` of one job of each of :data:`RULES`, for a
    schema-validated ``config``: a shard rule's job handles one shard's clips
    (:func:`estimate_clips_per_shard`), a rule of :data:`READS_EVERY_SHARD` all ``n_shards`` shards'.
    ``shard_clips``: the clips of each shard of a known set instead (a predicted video set: its
    shard jobs sized for its largest shard, the prediction job for all of it)."""
    dataset, resources = config["dataset"], config.get("resources") or {}
    if shard_clips is not None:
        largest, total = max([0, *shard_clips]), sum(shard_clips)
    else:
        largest = estimate_clips_per_shard(dataset, resources)
        total = largest * int(dataset["n_shards"])
    return {rule: job_resources(rule, resources.get(rule), clips=total if rule in READS_EVERY_SHARD else largest)
            for rule in RULES}


def estimate_clips_per_shard(dataset: Mapping, resources: Mapping | None = None) -> int:
    """Clips per shard for sizing jobs before the manifest exists (see the module docstring).

    ``dataset`` is the config's (schema-validated) ``dataset`` section; the data set's reader
    counts its clips (:func:`affectflow.data.count_clips`).
    """
    from affectflow.data import count_clips  # the readers know the organisers' files

    resources = resources or {}
    if resources.get("clips_per_shard"):
        return int(resources["clips_per_shard"])
    demo_clips = dataset["demo"]["n_clips"] if "demo" in dataset else None
    total = count_clips(dataset["task"], dataset["root"], demo_clips=demo_clips)
    if total is None:
        return FALLBACK_CLIPS_PER_SHARD
    return max(1, math.ceil(total / int(dataset["n_shards"])))
