# Paths, shard lists and config look-ups shared by every stage.
from affectflow.config_check import check_names
from affectflow.features.stage import cached_signature

check_names(config)

DATASET = config["dataset"]
DS = DATASET["name"]
ROOT = DATASET["root"]
N_SHARDS = DATASET.get("n_shards", 8)
SHARDS = list(range(N_SHARDS))
RESULTS = f"results/{DS}"
SUBMISSION = "results/submission.csv"
FACES = config["faces"]
RUNS = config["train"]["runs"]
K_FOLDS = config["train"].get("k_folds", 2)
ENSEMBLE = config["ensemble"]


wildcard_constraints:
    s=r"\d+",
    k=r"\d+",
    backbone="|".join(config["features"]),
    run="|".join(RUNS),


def backbone_source(wildcards):
    """The shard a backbone reads: face crops for visual backbones, audio for audio ones."""
    signature = cached_signature(
        wildcards.backbone, config["features"][wildcards.backbone]
    )
    if signature["modality"] == "visual":
        return f"{RESULTS}/faces/{FACES['detector']}/shard-{wildcards.s}.h5"
    return f"{RESULTS}/media/shard-{wildcards.s}.h5"


def backbone_params(wildcards):
    """Name, parameters, weights checksum and version: a change re-runs the backbone's jobs."""
    return cached_signature(wildcards.backbone, config["features"][wildcards.backbone])


def run_feature_shards(wildcards):
    backbone = RUNS[wildcards.run]["backbone"]
    return expand(f"{RESULTS}/features/{backbone}/shard-{{s}}.h5", s=SHARDS)


def fold_dirs(run):
    return [f"{RESULTS}/train/{run}/fold{k}" for k in range(K_FOLDS)]
