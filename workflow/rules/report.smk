# Submission (validated) and, when test labels are known (the demo), its held-out score.


rule submission:
    input:
        manifest=f"{RESULTS}/manifest.tsv",
        test=rules.ensemble.output.test,
    output:
        SUBMISSION,
    log:
        f"logs/submission/{DS}.log",
    benchmark:
        f"benchmarks/submission/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
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
