# Paths, shard lists and config look-ups shared by every stage.
from affectflow.config.names import check_names
from affectflow.features.stage import cached_feature_signature, check_feature_entries
from affectflow.config.resources import estimate_clips_per_shard, job_resources
from affectflow.tasks import task_spec
from affectflow.training.fold import run_folds

check_names(config)
check_feature_entries(config["features"])  # e.g. a face mask on an audio backbone

DATASET = config["dataset"]
DS = DATASET["name"]
ROOT = DATASET["root"]
N_SHARDS = DATASET.get("n_shards", 8)
SHARDS = list(range(N_SHARDS))
RESULTS = f"results/{DS}"
SUBMISSION = config.get("submission", "results/submission.csv")
TASK = task_spec(DATASET.get("task", "emi"))
# Per-frame tasks (VA, AU): the labelled frames as one table (id, frame, targets), read by the
# train, ensemble, submission and report rules.
FRAME_LABELS = f"{RESULTS}/frame_labels.csv.gz"
FACES = config["faces"]
RUNS = config["train"]["runs"]
K_FOLDS = config["train"].get("k_folds", 2)
ENSEMBLE = config["ensemble"]
# Per-job cpus (threads), mem_mb, runtime and gpu of the GPU and per-shard rules, scaled with
# the clips a job handles (see affectflow.config.resources); other rules take default-resources.
CLIPS_PER_SHARD = estimate_clips_per_shard(DATASET, config.get("resources"))
JOB = {
    name: job_resources(
        name,
        config.get("resources", {}).get(name),
        clips=CLIPS_PER_SHARD * (N_SHARDS if name == "train" else 1),
    )
    for name in ("media", "faces", "features", "train")
}


wildcard_constraints:
    s=r"\d+",
    k=r"\d+",
    backbone="|".join(config["features"]),
    run="|".join(RUNS),
    method="mean|weighted|greedy|best",


def dataset_listing():
    """The organisers' files the manifest is read from, by task (see affectflow.data)."""
    if TASK.name == "emi":
        return [f"{ROOT}/train_split.csv", f"{ROOT}/valid_split.csv"]
    if TASK.name == "eri":
        older = [f"{ROOT}/labels.csv", f"{ROOT}/partition.csv"]
        return (
            older
            if not os.path.exists(f"{ROOT}/data_info.csv")
            and all(map(os.path.exists, older))
            else [f"{ROOT}/data_info.csv"]
        )
    challenge = {"va": "VA_Estimation_Challenge", "au": "AU_Detection_Challenge"}[
        TASK.name
    ]
    return [f"{ROOT}/Annotations/{challenge}"] + [
        DATASET[k] for k in ("test_list",) if k in DATASET
    ]


def truth_table():
    """Labels the ensemble and report score against: the manifest (clip tasks) or frame labels."""
    return FRAME_LABELS if TASK.per_frame else f"{RESULTS}/manifest.tsv"


def feature_signature(wildcards):
    """Backbone, parameters, weights checksum, version (and timeline): a change re-runs the jobs."""
    return cached_feature_signature(
        wildcards.backbone, config["features"][wildcards.backbone]
    )


def feature_inputs(wildcards):
    """Face crops for visual backbones, audio for audio ones; the frame timeline if aligned."""
    signature = feature_signature(wildcards)
    faces = f"{RESULTS}/faces/{FACES['detector']}/shard-{wildcards.s}.h5"
    media = f"{RESULTS}/media/shard-{wildcards.s}.h5"
    inputs = {"source": faces if signature["modality"] == "visual" else media}
    if signature.get("timeline") == "frames":
        inputs["frames"] = faces
    return inputs


def run_feature_shards(wildcards):
    # the run's backbone, then those it is fused with (train.runs.<run>.fuse_with), then its
    # face-masked copies (train.runs.<run>.mask_augment, paper 004's data balancing)
    run = RUNS[wildcards.run]
    backbones = [run["backbone"], *run.get("fuse_with", [])]
    backbones += [b for b in run.get("mask_augment", {}).values() if b not in backbones]
    return expand(f"{RESULTS}/features/{{b}}/shard-{{s}}.h5", b=backbones, s=SHARDS)


def fold_dirs(run):
    # A run's fold_scheme (affectflow.data.folds) may fix its number of folds (e.g. 7 in 004).
    return [
        f"{RESULTS}/train/{run}/fold{k}" for k in range(run_folds(RUNS[run], K_FOLDS))
    ]
