# Paths, shard lists, config look-ups and the target list shared by every stage. The config is
# validated with its schema's defaults filled in (Snakefile), so values are read by indexing.
import os

from affectflow.config import check_config
from affectflow.config.names import registered
from affectflow.config.resources import rule_resources
from affectflow.config.runs import (
    finetune_input,
    finetune_weights,
    finetuned_fold,
    run_backbones,
    run_folds,
    with_finetuned_models,
)
from affectflow.data import dataset_options
from affectflow.data.listing import LABELLED, TEST, TEST_SHARD_PREFIX, read_listing
from affectflow.features.signature import cached_feature_signature
from affectflow.tasks import task_spec
from affectflow.training.recipes import resolve_run

# Names against the registries, feature entries, runs, branch inits; a bad value fails here,
# before any job. The faces stage's options come back resolved.
FACE_OPTIONS = check_config(config)

DATASET = config["dataset"]
DS = DATASET["name"]
ROOT = DATASET["root"]
# the root as the jobs record it: "data/x" and "./data/x/" are one place (relative to the working
# directory, as given, so that moving the project with its data re-runs nothing)
ROOT_PATH = os.path.normpath(ROOT)
N_SHARDS = DATASET["n_shards"]
# The data set as it is now: each clip's partition, shard and file fingerprint. Each job gets the
# part it depends on as a params value, so new, removed or replaced files re-run exactly that.
LISTING = read_listing(
    DATASET["task"],
    ROOT,
    n_shards=N_SHARDS,
    test_shards=DATASET.get("test_shards"),
    test_list=DATASET.get("test_list"),
    demo=DATASET.get("demo"),
)
SHARDS = list(LISTING.shards)
RESULTS = f"results/{DS}"
# a features entry of a fine-tuned encoder (backbone finetuned) reads its run's fold directory
config["features"] = with_finetuned_models(
    config["features"],
    config["train"]["runs"],
    f"{RESULTS}/train",
    config["train"]["k_folds"],
)
TASK = task_spec(DATASET["task"])
FACES = config["faces"]
RUNS = config["train"]["runs"]
K_FOLDS = config["train"]["k_folds"]
SEED = config["train"]["seed"]
ENSEMBLE = config["ensemble"]
# Alternative ensembles of the same members (ensemble.compare), for the report's comparison.
ENSEMBLE_COMPARE = [m for m in ENSEMBLE["compare"] if m != ENSEMBLE["method"]]
# Per-job cpus (threads), mem_mb, runtime and gpu of the GPU and per-shard rules, scaled with
# the clips a job handles (affectflow.config.resources); other rules take default-resources.
JOB = rule_resources(config)


wildcard_constraints:
    s=rf"({TEST_SHARD_PREFIX})?\d+",
    k=r"\d+",
    backbone="|".join(config["features"]),
    run="|".join(RUNS),
    method="|".join(registered("ensemblers")),


def demo_set():
    """The rendered demo set (the demo only): what jobs reading the data set wait for."""
    return [rules.demo_dataset.output.raw] if "demo" in DATASET else []


def truth_table():
    """Labels the ensemble and report score against: the manifest (clip tasks) or frame labels."""
    return (
        rules.frame_labels.output.table
        if TASK.per_frame
        else rules.manifest.output.manifest
    )


def frame_label_inputs():
    """The frame label table for per-frame tasks (VA, AU); nothing for clip tasks."""
    return [rules.frame_labels.output.table] if TASK.per_frame else []


def feature_signature(wildcards):
    """Backbone, parameters, weights checksum, version (and timeline): a change re-runs the jobs."""
    return cached_feature_signature(
        wildcards.backbone, config["features"][wildcards.backbone]
    )


def feature_inputs(wildcards):
    """Face crops for visual backbones, audio for audio ones; the frame timeline if aligned."""
    signature = feature_signature(wildcards)
    faces = expand(rules.faces.output.shard, detector=FACES["detector"], s=wildcards.s)[
        0
    ]
    media = expand(rules.media.output.shard, s=wildcards.s)[0]
    inputs = {"source": faces if signature["modality"] == "visual" else media}
    if signature.get("timeline") == "frames":
        inputs["frames"] = faces
    entry = config["features"][wildcards.backbone]
    if signature["backbone"] == "finetuned":
        # the fine-tuning run's fold files: a change of the run re-runs its features
        run, folds = entry["run"], finetuned_fold(entry, fold_count(entry["run"]))
        inputs["models"] = [
            path
            for pattern in (
                rules.train.output.model,
                rules.train.output.config,
                rules.train.output.metrics,
            )
            for path in expand(pattern, run=run, k=folds)
        ]
    return inputs


def run_feature_shards(partition, backbones=run_backbones):
    """What a run reads over one partition's shards (labelled: training; test: prediction): the
    feature shards of its backbones, or for a fine-tuning run its faces shards (finetune.input
    crops) or media shards (audio). A function of the wildcards for a rule's input."""

    def shards(wildcards):
        run = RUNS[wildcards.run]
        wanted = LISTING.partition_shards(partition)
        source = finetune_input(run)
        if source == "crops":
            return expand(
                rules.faces.output.shard, detector=FACES["detector"], s=wanted
            )
        if source == "audio":
            return expand(rules.media.output.shard, s=wanted)
        return expand(rules.features.output.shard, backbone=backbones(run), s=wanted)

    return shards


def train_run(wildcards):
    """The run over its recipe; a fine-tuning run's also with the weights its encoder starts from
    (its backbone entry's) and their signature, so that new weights re-run it. Runs on cached
    features get nothing more: their params stay as before, and so does their cache."""
    run = RUNS[wildcards.run]
    resolved = resolve_run(run)
    weights = finetune_weights(run, config["features"])
    if weights:
        backbone = run["backbone"]
        signature = cached_feature_signature(backbone, config["features"][backbone])
        resolved["encoder_weights"] = {"weights": weights, "signature": signature}
    return resolved


def fold_count(run):
    """A run's number of folds; its fold_scheme (affectflow.data.folds) may fix it."""
    return run_folds(RUNS[run], K_FOLDS)


def fold_dirs(run):
    """A run's fold directories."""
    return [f"{RESULTS}/train/{run}/fold{k}" for k in range(fold_count(run))]


def fold_files(pattern, run):
    """One of the train rule's outputs (e.g. rules.train.output.oof) for every fold of a run."""
    return expand(pattern, run=run, k=range(fold_count(run)))


def ensemble_folds():
    """The fold predictions (OOF and test) of every ensemble member."""
    return [
        path
        for run in ENSEMBLE["members"]
        for pattern in (rules.train.output.oof, rules.predict_test.output.test)
        for path in fold_files(pattern, run)
    ]


def get_final_output():
    """The default targets: the submission, the data-quality tables and plots, the report figures."""
    return [
        rules.submission.output.submission,
        rules.qc_report.output.summary,
        rules.qc_report.output.plots,
        rules.report_scores.output.svg,
        rules.report_scores.output.tsv,
        rules.report_oof_ensemble.output.svg,
        expand(rules.report_oof_run.output.svg, run=RUNS),
        expand(rules.report_learning_curves.output.svg, run=RUNS),
    ]
