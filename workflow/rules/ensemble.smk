# Ensemble stage: late fusion of the runs' fold predictions, fitted on their OOF predictions.


rule ensemble:
    input:
        truth=truth_table(),
        folds=ensemble_folds(),
    output:
        oof=f"{RESULTS}/ensemble/{ENSEMBLE['name']}/oof.csv",
        test=f"{RESULTS}/ensemble/{ENSEMBLE['name']}/test.csv",
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
    script:
        "../scripts/ensemble.py"


# The same members fitted with another method (ensemble.compare), for the report's comparison;
# the submission uses the configured ensemble only.
rule ensemble_compare:
    input:
        truth=truth_table(),
        folds=ensemble_folds(),
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
        thresholds=ENSEMBLE["thresholds"],
        task=TASK.name,
    script:
        "../scripts/ensemble.py"
