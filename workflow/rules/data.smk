# Data stage: (optionally) build the demo set, then the manifest with shards and folds.


if "demo" in DATASET:

    rule demo_dataset:
        output:
            # the Hume-Vidmimic2 split files, as the EMI reader lists them
            splits=organiser_files("emi", ROOT),
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
        listing=dataset_files(),
    output:
        manifest=f"{RESULTS}/manifest.tsv",
        shards=f"{RESULTS}/shards.tsv",
    log:
        f"logs/manifest/{DS}.log",
    benchmark:
        f"benchmarks/manifest/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        task=TASK.name,
        root=lambda wildcards: ROOT,
        options=dataset_options(DATASET),
        n_shards=N_SHARDS,
        k_folds=K_FOLDS,
        seed=SEED,
    script:
        "../scripts/manifest.py"


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
