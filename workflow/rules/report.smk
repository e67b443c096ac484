# What `snakemake --report results/report.html` shows. Its front page (a global directive;
# the path is relative to this file):
report: "../report/workflow.rst"


# Data-quality table and plots of the data set (paper 002's descriptive analysis), in the
# Snakemake report. Target: the QC_REPORT files (e.g. results/<ds>/qc/summary.tsv).
QC_PLOTS = ["durations", "frame_rates", "face_rate", "qc_reasons"]
QC_REPORT = [f"{RESULTS}/qc/summary.tsv"] + [f"{RESULTS}/qc/{p}.svg" for p in QC_PLOTS]


rule qc_report:
    input:
        media=expand(f"{RESULTS}/media/shard-{{s}}.qc.tsv", s=SHARDS),
        faces=expand(
            f"{RESULTS}/faces/{FACES['detector']}/shard-{{s}}.qc.tsv", s=SHARDS
        ),
    output:
        clips=report(
            f"{RESULTS}/qc/clips.tsv",
            caption="../report/qc_clips.rst",
            category="Data quality",
        ),
        summary=report(
            f"{RESULTS}/qc/summary.tsv",
            caption="../report/qc_summary.rst",
            category="Data quality",
        ),
        plots=report(
            expand(f"{RESULTS}/qc/{{plot}}.svg", plot=QC_PLOTS),
            caption="../report/qc_plots.rst",
            category="Data quality",
        ),
    log:
        f"logs/qc_report/{DS}.log",
    benchmark:
        f"benchmarks/qc_report/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        plots=QC_PLOTS,
    script:
        "../scripts/qc_report.py"


# Model figures of the report: OOF scores of every run and the ensemble, OOF predictions
# against truth, learning curves. Target: REPORT_FIGURES (rule all can list it).
REPORT_TASK = TASK.name
REPORT_DIR = f"{RESULTS}/report"
ENSEMBLE_NAME = ENSEMBLE.get("name", "late_mean")
# Clip tasks take their labels from the manifest, per-frame tasks from the frame label table.
REPORT_TRUTH = truth_table()
REPORT_FIGURES = (
    [f"{REPORT_DIR}/scores.svg", f"{REPORT_DIR}/scores.tsv"]
    + expand(f"{REPORT_DIR}/oof/run-{{run}}.svg", run=RUNS)
    + [f"{REPORT_DIR}/oof/ensemble-{ENSEMBLE_NAME}.svg"]
    + expand(f"{REPORT_DIR}/learning_curves/{{run}}.svg", run=RUNS)
)


rule report_scores:
    input:
        truth=REPORT_TRUTH,
        runs=[f"{d}/oof.csv" for run in RUNS for d in fold_dirs(run)],
        ensemble=rules.ensemble.output.oof,
        compare=expand(
            f"{RESULTS}/ensemble/compare-{{method}}/oof.csv", method=ENSEMBLE_COMPARE
        ),
    output:
        svg=report(
            f"{REPORT_DIR}/scores.svg",
            caption="../report/scores.rst",
            category="Model scores",
            subcategory="OOF score per target",
            labels={"figure": "bar chart"},
        ),
        tsv=report(
            f"{REPORT_DIR}/scores.tsv",
            caption="../report/scores_table.rst",
            category="Model scores",
            subcategory="OOF score per target",
            labels={"figure": "table"},
        ),
    log:
        f"logs/report_scores/{DS}.log",
    benchmark:
        f"benchmarks/report_scores/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        figure="scores",
        task=REPORT_TASK,
        runs={run: [f"{d}/oof.csv" for d in fold_dirs(run)] for run in RUNS},
        # plain str: an IOFile from rules.ensemble.output carries its rule, which does not pickle
        ensembles={
            ENSEMBLE_NAME: str(rules.ensemble.output.oof),
            **{
                f"compare-{m}": f"{RESULTS}/ensemble/compare-{m}/oof.csv"
                for m in ENSEMBLE_COMPARE
            },
        },
    script:
        "../scripts/report_figures.py"


rule report_oof_run:
    input:
        truth=REPORT_TRUTH,
        predictions=lambda wildcards: [f"{d}/oof.csv" for d in fold_dirs(wildcards.run)],
    output:
        svg=report(
            f"{REPORT_DIR}/oof/run-{{run}}.svg",
            caption="../report/oof.rst",
            category="OOF predictions",
            subcategory="{run}",
            labels={"figure": "truth vs prediction"},
        ),
    log:
        f"logs/report_oof_run/{DS}-{{run}}.log",
    benchmark:
        f"benchmarks/report_oof_run/{DS}-{{run}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        figure="oof",
        task=REPORT_TASK,
        title=lambda wildcards: f"Run {wildcards.run}",
    script:
        "../scripts/report_figures.py"


rule report_oof_ensemble:
    input:
        truth=REPORT_TRUTH,
        predictions=rules.ensemble.output.oof,
    output:
        svg=report(
            f"{REPORT_DIR}/oof/ensemble-{ENSEMBLE_NAME}.svg",
            caption="../report/oof.rst",
            category="OOF predictions",
            subcategory=f"ensemble {ENSEMBLE_NAME}",
            labels={"figure": "truth vs prediction"},
        ),
    log:
        f"logs/report_oof_ensemble/{DS}.log",
    benchmark:
        f"benchmarks/report_oof_ensemble/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        figure="oof",
        task=REPORT_TASK,
        title=f"Ensemble {ENSEMBLE_NAME}",
    script:
        "../scripts/report_figures.py"


rule report_learning_curves:
    input:
        metrics=lambda wildcards: [
            f"{d}/metrics.json" for d in fold_dirs(wildcards.run)
        ],
    output:
        svg=report(
            f"{REPORT_DIR}/learning_curves/{{run}}.svg",
            caption="../report/learning_curves.rst",
            category="Learning curves",
            subcategory="{run}",
            labels={"figure": "loss per epoch"},
        ),
    log:
        f"logs/report_learning_curves/{DS}-{{run}}.log",
    benchmark:
        f"benchmarks/report_learning_curves/{DS}-{{run}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        figure="learning_curves",
        title=lambda wildcards: f"Learning curves of run {wildcards.run}",
    script:
        "../scripts/report_figures.py"
