# Train stage: one temporal model per run (one backbone), K folds over train+val.
from affectflow.train import check_runs

check_runs(config["train"], config["features"])


rule train:
    input:
        manifest=f"{RESULTS}/manifest.tsv",
        features=run_feature_shards,
        frame_labels=[FRAME_LABELS] if TASK.per_frame else [],
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
