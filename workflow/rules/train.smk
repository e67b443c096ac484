# Train stage: one temporal model per run (one backbone), K folds over train+val; then each fold's
# model predicts the test clips in a job of its own, so new test videos never re-run training.
from affectflow.config.runs import branch_model_paths, modality_backbones
from affectflow.training.recipes import resolve_run


rule train:
    input:
        manifest=rules.manifest.output.manifest,
        # feature shards; a fine-tuning run's faces or media shards
        features=run_feature_shards(LABELLED),
        frame_labels=frame_label_inputs(),
        # 001: fold k of a fused run starts from fold k's model of each unimodal run it names
        # (train.runs.<run>.init_branches), which never saw fold k's out-of-fold clips; with
        # branch_fold best, from each run's best-scoring fold (all its folds' files)
        branches=lambda wildcards: branch_model_paths(
            RUNS[wildcards.run], f"{RESULTS}/train", int(wildcards.k), fold_count
        ),
    output:
        oof=f"{RESULTS}/train/{{run}}/fold{{k}}/oof.csv",
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
        # the run over its recipe: editing a recipe re-runs the runs that name it (a fine-tuning
        # run's also holds its encoder's starting weights and their checksum)
        resolved=train_run,
        seed=SEED,
        k_folds=K_FOLDS,
        task=TASK.name,
    script:
        "../scripts/train.py"


rule predict_test:
    input:
        model=rules.train.output.model,
        config=rules.train.output.config,
        manifest=rules.test_manifest.output.manifest,
        # the run's own backbones (fused too), never the masked copies it trains with
        features=run_feature_shards(TEST, modality_backbones),
    output:
        test=f"{RESULTS}/train/{{run}}/fold{{k}}/test.csv",
    log:
        f"logs/predict_test/{DS}-{{run}}-{{k}}.log",
    benchmark:
        f"benchmarks/predict_test/{DS}-{{run}}-{{k}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    threads: JOB["train"]["cpus"]
    resources:
        gpu=JOB["train"]["gpu"],
        mem_mb=JOB["train"]["mem_mb"],
        runtime=JOB["train"]["runtime"],
    params:
        settings=lambda wildcards: RUNS[wildcards.run],
        # the run over its recipe: editing a recipe re-runs the runs that name it
        resolved=lambda wildcards: resolve_run(RUNS[wildcards.run]),
        task=TASK.name,
    script:
        "../scripts/predict_test.py"
