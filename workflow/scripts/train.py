"""Train one run on one fold."""

from pathlib import Path

import pandas as pd
import torch

from affectflow.training.branch_init import with_branch_checkpoints
from affectflow.data import read_manifest
from affectflow.runtime.gpu_slots import claim_gpus_for_job
from affectflow.runtime.signals import exit_cleanly_on_sigterm
from affectflow.tasks import task_spec
from affectflow.training.fold import settings_from_run, shards_by_backbone, train_fold
from affectflow.runtime.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(max(1, snakemake.threads))  # the job's share of the cores, not all of them
exit_cleanly_on_sigterm()  # scancel / time limit: remove the half-written shard, then fail
claim_gpus_for_job(snakemake)  # a free device of its own, held until the job exits
spec = task_spec(snakemake.params.task)
run = {"task": spec.name, **snakemake.params.settings}  # the data set's task unless the run says
# init_branches (001): this fold's unimodal models go to the fusion model's branches
run = with_branch_checkpoints(run, list(snakemake.input.branches))
frame_labels = snakemake.input.frame_labels
train_fold(
    read_manifest(snakemake.input.manifest),
    shards_by_backbone(list(snakemake.input.features), [run["backbone"], *run.get("fuse_with", [])]),
    int(snakemake.wildcards.k),
    Path(snakemake.output.metrics).parent,
    targets=list(spec.targets),
    settings=settings_from_run(run, seed=snakemake.params.seed),
    k_folds=snakemake.params.k_folds,
    frame_labels=pd.read_csv(frame_labels[0]) if frame_labels else None,
    metric=spec.metric,
)
