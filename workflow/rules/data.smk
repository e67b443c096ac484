# Data stage: (optionally) build the demo set, then the manifests (labelled clips; test clips)
# with shards and folds. Which clips there are comes from the listing (common.smk), read when the
# job graph is built: a manifest re-runs when its partition's clips or the label files change.
from affectflow.data.listing import label_files

if "demo" in DATASET:

    rule demo_dataset:
        output:
            # the Hume-Vidmimic2 split files, as the EMI reader lists them
            splits=label_files("emi", ROOT),
            raw=directory(f"{ROOT}/raw"),
            ground_truth=DATASET.get("ground_truth", f"{RESULTS}/test_ground_truth.csv"),
            properties=f"{RESULTS}/demo_properties.tsv",
        log:
            f"logs/demo_dataset/{DS}.log",
        benchmark:
            f"benchmarks/demo_dataset/{DS}.tsv"
        conda:
            "../../envs/affectflow.yaml"
        params:
            demo=DATASET["demo"],
        script:
            "../scripts/demo_dataset.py"


rule manifest:
    input:
        demo=demo_set(),
    output:
        manifest=f"{RESULTS}/manifest.tsv",
    log:
        f"logs/manifest/{DS}.log",
    benchmark:
        f"benchmarks/manifest/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        partition=LABELLED,
        # the reader opens the videos only for the frame tasks' frame rate and count
        clips=LISTING.partition_clips(LABELLED, fingerprints=TASK.per_frame),
        # the labels as the files hold them now: an edit re-runs this job, a test row added to
        # ERI's data_info.csv does not, and a label file copied back with an older time is seen
        labels=LISTING.labels,
        task=TASK.name,
        root=lambda wildcards: ROOT_PATH,
        # no test list: the organisers' late release of one must not re-write this table (the job
        # reads every option from the config: the labelled rows do not depend on the test list)
        options=dataset_options(DATASET, labelled_only=True),
        n_shards=N_SHARDS,
        test_shards=None,  # the labelled rows' shards do not depend on it
        k_folds=K_FOLDS,
        seed=SEED,
    script:
        "../scripts/manifest.py"


# The test clips, apart: a new test video re-writes this table and never the one training reads.
use rule manifest as test_manifest with:
    output:
        manifest=f"{RESULTS}/test_manifest.tsv",
    log:
        f"logs/test_manifest/{DS}.log",
    benchmark:
        f"benchmarks/test_manifest/{DS}.tsv"
    params:
        partition=TEST,
        clips=LISTING.partition_clips(TEST, fingerprints=TASK.per_frame),
        labels="",
        options=dataset_options(DATASET),
        test_shards=DATASET.get("test_shards"),


# Per-frame tasks: every valid labelled frame of the train/val tracks in one table.
rule frame_labels:
    input:
        manifest=rules.manifest.output.manifest,
    output:
        table=f"{RESULTS}/frame_labels.csv.gz",
    log:
        f"logs/frame_labels/{DS}.log",
    benchmark:
        f"benchmarks/frame_labels/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        task=TASK.name,
    script:
        "../scripts/frame_labels.py"
