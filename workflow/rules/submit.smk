# Submission (validated) and, when test labels are known (the demo), its held-out score. The ids
# to submit are read from the organisers' files when the job runs, not from a cached table.


rule submission:
    input:
        manifest=rules.manifest.output.manifest,
        test_manifest=rules.test_manifest.output.manifest,
        test=rules.ensemble_test.output.test,
        # per-frame tasks: the training mean for tracks no run predicts, and the organisers'
        # sample file naming the frames to submit (default: every frame of each test track)
        frame_labels=frame_label_inputs(),
        sample_frames=[DATASET["sample_file"]] if "sample_file" in DATASET else [],
    output:
        submission=config["submission"],
    log:
        f"logs/submission/{DS}.log",
    benchmark:
        f"benchmarks/submission/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        task=TASK.name,
        root=ROOT_PATH,
        test_list=DATASET.get("test_list"),
    script:
        "../scripts/submission.py"


if "ground_truth" in DATASET:

    rule score:
        input:
            submission=rules.submission.output.submission,
            ground_truth=DATASET["ground_truth"],
        output:
            score=f"{RESULTS}/test_score.json",
        log:
            f"logs/score/{DS}.log",
        benchmark:
            f"benchmarks/score/{DS}.tsv"
        conda:
            "../../envs/affectflow.yaml"
        script:
            "../scripts/score.py"
