# Ensemble stage: late fusion of the runs' fold predictions.


rule ensemble:
    input:
        truth=truth_table(),
        folds=[
            f"{d}/{name}"
            for run in ENSEMBLE["members"]
            for d in fold_dirs(run)
            for name in ("oof.csv", "test.csv")
        ],
    output:
        oof=f"{RESULTS}/ensemble/{ENSEMBLE.get('name', 'late_mean')}/oof.csv",
        test=f"{RESULTS}/ensemble/{ENSEMBLE.get('name', 'late_mean')}/test.csv",
        members=f"{RESULTS}/ensemble/{ENSEMBLE.get('name', 'late_mean')}/members.json",
        score=f"{RESULTS}/ensemble/{ENSEMBLE.get('name', 'late_mean')}/score.json",
    log:
        f"logs/ensemble/{DS}.log",
    benchmark:
        f"benchmarks/ensemble/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        members={run: fold_dirs(run) for run in ENSEMBLE["members"]},
        method=ENSEMBLE.get("method", "mean"),
        method_params=ENSEMBLE.get("params", {}),
        thresholds=ENSEMBLE.get("thresholds", False),
        task=TASK.name,
    script:
        "../scripts/ensemble.py"


# Alternative ensembles of the same members (ensemble.compare), fitted the same way, for the
# report's comparison; the submission uses the configured ensemble only.
ENSEMBLE_COMPARE = [
    m for m in ENSEMBLE.get("compare", []) if m != ENSEMBLE.get("method", "mean")
]


rule ensemble_compare:
    input:
        truth=truth_table(),
        folds=rules.ensemble.input.folds,
    output:
        oof=f"{RESULTS}/ensemble/compare-{{method}}/oof.csv",
        test=f"{RESULTS}/ensemble/compare-{{method}}/test.csv",
        members=f"{RESULTS}/ensemble/compare-{{method}}/members.json",
        score=f"{RESULTS}/ensemble/compare-{{method}}/score.json",
    log:
        f"logs/ensemble_compare/{DS}-{{method}}.log",
    benchmark:
        f"benchmarks/ensemble_compare/{DS}-{{method}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        members={run: fold_dirs(run) for run in ENSEMBLE["members"]},
        method=lambda wildcards: wildcards.method,
        method_params={},
        thresholds=ENSEMBLE.get("thresholds", False),
        task=TASK.name,
    script:
        "../scripts/ensemble.py"


# Submission (validated) and, when test labels are known (the demo), its held-out score.


rule submission:
    input:
        manifest=f"{RESULTS}/manifest.tsv",
        test=rules.ensemble.output.test,
        # per-frame tasks: the training mean for tracks no run predicts, and the organisers'
        # sample file naming the frames to submit (default: every frame of each test track)
        frame_labels=[FRAME_LABELS] if TASK.per_frame else [],
        sample_frames=[DATASET["sample_file"]] if "sample_file" in DATASET else [],
    output:
        SUBMISSION,
    log:
        f"logs/submission/{DS}.log",
    benchmark:
        f"benchmarks/submission/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        task=TASK.name,
    script:
        "../scripts/submission.py"


if "ground_truth" in DATASET:

    rule score:
        input:
            submission=SUBMISSION,
            ground_truth=DATASET["ground_truth"],
        output:
            f"{RESULTS}/test_score.json",
        log:
            f"logs/score/{DS}.log",
        conda:
            "../../envs/affectflow.yaml"
        script:
            "../scripts/score.py"
