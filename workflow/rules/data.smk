# Data stage: (optionally) build the demo set, then the manifest with shards and folds.


if "demo" in DATASET:

    rule demo_dataset:
        output:
            train=f"{ROOT}/train_split.csv",
            valid=f"{ROOT}/valid_split.csv",
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
        train=f"{ROOT}/train_split.csv",
        valid=f"{ROOT}/valid_split.csv",
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
        root=lambda wildcards, input: os.path.dirname(input.train),
        n_shards=N_SHARDS,
        k_folds=K_FOLDS,
        seed=config["train"].get("seed", 0),
    script:
        "../scripts/manifest.py"
