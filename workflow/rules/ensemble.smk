# Ensemble stage: late fusion of the runs' fold predictions, fitted on their OOF predictions, then
# applied to the test split's fold predictions by the step that applies it to any predicted videos.


rule ensemble:
    input:
        truth=truth_table(),
        folds=ensemble_folds(),
    output:
        oof=f"{RESULTS}/ensemble/{ENSEMBLE['name']}/oof.csv",
        members=f"{RESULTS}/ensemble/{ENSEMBLE['name']}/members.json",
        score=f"{RESULTS}/ensemble/{ENSEMBLE['name']}/score.json",
    log:
        f"logs/ensemble/{DS}.log",
    benchmark:
        f"benchmarks/ensemble/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        members={run: fold_dirs(run) for run in ENSEMBLE["members"]},
        method=ENSEMBLE["method"],
        method_params=ENSEMBLE["params"],
        thresholds=ENSEMBLE["thresholds"],
        task=TASK.name,
        test=False,
    script:
        "../scripts/ensemble.py"


# The fitted ensemble (members.json) over its members' fold predictions of the test split.
rule ensemble_test:
    input:
        members=f"{ENSEMBLE_DIR}/members.json",
        folds=lambda wildcards: member_fold_paths(rules.predict_test.output.test),
    output:
        test=f"{RESULTS}/ensemble/{ENSEMBLE['name']}/test.csv",
    log:
        f"logs/ensemble_test/{DS}.log",
    benchmark:
        f"benchmarks/ensemble_test/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        tables=lambda wildcards: member_fold_tables(rules.predict_test.output.test),
        task=TASK.name,
    script:
        "../scripts/apply_ensemble.py"


# The same members fitted with another method (ensemble.compare), for the report's comparison;
# the submission uses the configured ensemble only.
rule ensemble_compare:
    input:
        truth=truth_table(),
        folds=ensemble_folds(),
    output:
        oof=f"{RESULTS}/ensemble/compare-{{method}}/oof.csv",
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
        thresholds=ENSEMBLE["thresholds"],
        task=TASK.name,
        test=False,
    script:
        "../scripts/ensemble.py"
