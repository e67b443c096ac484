# Train stage: one temporal model per run (one backbone), K folds over train+val.
from affectflow.training.branch_init import (
    branch_model_paths,
    check_branch_inits,
    without_branch_keys,
)
from affectflow.training.fold import check_runs

check_runs(without_branch_keys(config["train"]), config["features"])
check_branch_inits(config["train"], k_folds=K_FOLDS)


rule train:
    input:
        manifest=f"{RESULTS}/manifest.tsv",
        features=run_feature_shards,
        frame_labels=[FRAME_LABELS] if TASK.per_frame else [],
        # 001: fold k of a fused run starts from fold k's model of each unimodal run it names
        # (train.runs.<run>.init_branches), which never saw fold k's out-of-fold clips
        branches=lambda wildcards: branch_model_paths(
            RUNS[wildcards.run], f"{RESULTS}/train", int(wildcards.k)
        ),
    output:
        oof=f"{RESULTS}/train/{{run}}/fold{{k}}/oof.csv",
        test=f"{RESULTS}/train/{{run}}/fold{{k}}/test.csv",
        metrics=f"{RESULTS}/train/{{run}}/fold{{k}}/metrics.json",
        model=f"{RESULTS}/train/{{run}}/fold{{k}}/model.pt",
        config=f"{RESULTS}/train/{{run}}/fold{{k}}/config.json",
    log:
        f"logs/train/{DS}-{{run}}-{{k}}.log",
    benchmark:
        f"benchmarks/train/{DS}-{{run}}-{{k}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    threads: JOB["train"]["cpus"]
    resources:
        gpu=JOB["train"]["gpu"],
        mem_mb=JOB["train"]["mem_mb"],
        runtime=JOB["train"]["runtime"],
    params:
        settings=lambda wildcards: RUNS[wildcards.run],
        seed=config["train"].get("seed", 0),
        k_folds=K_FOLDS,
        task=TASK.name,
    script:
        "../scripts/train.py"
