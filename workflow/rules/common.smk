# Paths, shard lists, config look-ups and the target list shared by every stage. The config is
# validated with its schema's defaults filled in (Snakefile), so values are read by indexing.
import copy
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
from affectflow.data.listing import (
    LABELLED,
    TEST,
    TEST_SHARD_PREFIX,
    empty_listing,
    read_listing,
)
from affectflow.features.signature import cached_feature_signature
from affectflow.predict.bundle import check_bundle
from affectflow.predict.videos import list_videos
from affectflow.tasks import task_spec
from affectflow.training.recipes import resolve_run

# Names against the registries, feature entries, runs, branch inits; a bad value fails here,
# before any job. The faces stage's options come back resolved.
FACE_OPTIONS = check_config(config)
# the config as given (validated, defaults filled): what a bundle records
GIVEN_CONFIG = copy.deepcopy(config)

DATASET = config["dataset"]
DS = DATASET["name"]
ROOT = DATASET["root"]
# the root as the jobs record it: "data/x" and "./data/x/" are one place (relative to the working
# directory, as given, so that moving the project with its data re-runs nothing)
ROOT_PATH = os.path.normpath(ROOT)
N_SHARDS = DATASET["n_shards"]
# Predicting videos (predict.videos) with the trained models, in place or from a bundle
# (predict.bundle: an exported ensemble, its config being this one; no training data needed).
PREDICT = config["predict"]
BUNDLE = PREDICT["bundle"]
# The data set as it is now: each clip's partition, shard and file fingerprint. Each job gets the
# part it depends on as a params value, so new, removed or replaced files re-run exactly that.
# A bundle's data set is not here: its listing is empty (its rules are never asked for).
LISTING = (
    empty_listing(ROOT)
    if BUNDLE
    else read_listing(
        DATASET["task"],
        ROOT,
        n_shards=N_SHARDS,
        test_shards=DATASET.get("test_shards"),
        test_list=DATASET.get("test_list"),
        demo=DATASET.get("demo"),
    )
)
SHARDS = list(LISTING.shards)
RESULTS = f"results/{DS}"
# the fold models and the fitted ensemble: this run's, or the bundle's (which no rule makes)
TRAIN_DIR = f"{BUNDLE}/train" if BUNDLE else f"{RESULTS}/train"
ENSEMBLE_DIR = (
    f"{BUNDLE}/ensemble"
    if BUNDLE
    else f"{RESULTS}/ensemble/{config['ensemble']['name']}"
)
# a features entry of a fine-tuned encoder (backbone finetuned) reads its run's fold directory
config["features"] = with_finetuned_models(
    config["features"],
    config["train"]["runs"],
    TRAIN_DIR,
    config["train"]["k_folds"],
)
if BUNDLE and workflow.is_main_process:
    # refused here, before any job: altered files, another config, or backbone weights whose
    # checksum differs (once, not again in each cluster job: it hashes the bundle's files)
    # (features as the workflow fills them in: a finetuned entry needs its run's models folder)
    check_bundle(BUNDLE, {**GIVEN_CONFIG, "features": config["features"]})
# the videos to predict, listed as the data set is (a new or replaced video re-runs its shard);
# a listing that fails (the folder gone) fails the predict target only, not the rest
PREDICT_DIR = PREDICT["out"] or f"{RESULTS}/predict"
PREDICT_LISTING, PREDICT_ERROR = None, "no videos named"
if PREDICT["videos"]:
    try:
        PREDICT_LISTING = list_videos(PREDICT["videos"], n_shards=PREDICT["shards"])
    except (OSError, ValueError) as error:
        PREDICT_ERROR = str(error)
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
# the predicted set's jobs sized for its own shards (the prediction job: all of its videos)
PREDICT_JOB = (
    rule_resources(
        config,
        shard_clips=PREDICT_LISTING.clips["shard"].value_counts().tolist(),
    )
    if PREDICT_LISTING is not None
    else JOB
)


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


def stage_rules(videos):
    """The media, faces and features rules of the data set, or (``videos``) of the videos to
    predict: the same jobs, on other shards, into other folders."""
    if videos:
        return rules.predict_media, rules.predict_faces, rules.predict_features
    return rules.media, rules.faces, rules.features


def fold_model_files(run, folds):
    """A run's fold model, config and metrics files (this run's train outputs, or a bundle's)."""
    return [
        f"{TRAIN_DIR}/{run}/fold{k}/{name}"
        for name in ("model.pt", "config.json", "metrics.json")
        for k in folds
    ]


def feature_inputs(videos=False):
    """A features job's inputs: face crops for visual backbones, audio for audio ones; the frame
    timeline if aligned; a fine-tuned encoder's fold files. A function of the wildcards.
    """

    def inputs(wildcards):
        media_rule, faces_rule, _ = stage_rules(videos)
        signature = feature_signature(wildcards)
        faces = expand(
            faces_rule.output.shard, detector=FACES["detector"], s=wildcards.s
        )[0]
        media = expand(media_rule.output.shard, s=wildcards.s)[0]
        found = {"source": faces if signature["modality"] == "visual" else media}
        if signature.get("timeline") == "frames":
            found["frames"] = faces
        entry = config["features"][wildcards.backbone]
        if signature["backbone"] == "finetuned":
            # the fine-tuning run's fold files: a change of the run re-runs its features
            run = entry["run"]
            found["models"] = fold_model_files(
                run, finetuned_fold(entry, fold_count(run))
            )
        return found

    return inputs


def run_feature_shards(partition, backbones=run_backbones):
    """What a run reads over one partition's shards (labelled: training; test: prediction; None:
    the videos to predict): the feature shards of its backbones, or for a fine-tuning run its
    faces shards (finetune.input crops) or media shards (audio). A function of the wildcards.
    """

    def shards(wildcards):
        run = RUNS[wildcards.run]
        videos = partition is None
        wanted = (
            list(PREDICT_LISTING.shards)
            if videos
            else LISTING.partition_shards(partition)
        )
        media_rule, faces_rule, features_rule = stage_rules(videos)
        source = finetune_input(run)
        if source == "crops":
            return expand(faces_rule.output.shard, detector=FACES["detector"], s=wanted)
        if source == "audio":
            return expand(media_rule.output.shard, s=wanted)
        return expand(features_rule.output.shard, backbone=backbones(run), s=wanted)

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
    """The out-of-fold predictions of every ensemble member: what the ensemble is fitted on."""
    return [
        path
        for run in ENSEMBLE["members"]
        for path in fold_files(rules.train.output.oof, run)
    ]


def member_fold_tables(pattern):
    """Each ensemble member's fold prediction tables of one set (a rule's output ``pattern``: the
    test split's ``test.csv`` or the predicted videos' per-fold tables), by member."""
    return {run: fold_files(pattern, run) for run in ENSEMBLE["members"]}


def member_fold_paths(pattern):
    """:func:`member_fold_tables` as one list of paths: a rule's input."""
    return [path for paths in member_fold_tables(pattern).values() for path in paths]


def no_videos():
    """What asking for predictions without (readable) videos answers."""
    raise ValueError(
        f"predict: {PREDICT_ERROR}: set predict.videos in the config (a folder, a list file "
        "or a list of paths), or run `affectflow predict VIDEOS... --bundle DIR --out DIR`"
    )


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
