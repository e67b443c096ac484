# Report stage: the data-quality tables and plots, and the model figures of
# `snakemake --report`; each figure has a table of its numbers beside it (<figure>.tsv).
from affectflow.report.qc import QC_PLOTS


# What `snakemake --report results/report.html` shows. Its front page (a global directive;
# the path is relative to this file):
report: "../report/workflow.rst"


# Data-quality tables and plots of the data set (Hallmen et al. 2024 (002)'s descriptive
# analysis, automated).
rule qc_report:
    input:
        media=expand(rules.media.output.qc, s=SHARDS),
        faces=expand(rules.faces.output.qc, detector=FACES["detector"], s=SHARDS),
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
        plot_tables=expand(f"{RESULTS}/qc/{{plot}}.tsv", plot=QC_PLOTS),
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


# Model figures: OOF scores of every run and ensemble, OOF predictions against truth,
# learning curves.
rule report_scores:
    input:
        truth=truth_table(),
        runs=[path for run in RUNS for path in fold_files(rules.train.output.oof, run)],
        # the configured ensemble, then the compared methods; each named by its directory
        ensembles=[
            rules.ensemble.output.oof,
            *expand(rules.ensemble_compare.output.oof, method=ENSEMBLE_COMPARE),
        ],
    output:
        svg=report(
            f"{RESULTS}/report/scores.svg",
            caption="../report/scores.rst",
            category="Model scores",
            subcategory="OOF score per target",
            labels={"figure": "bar chart"},
        ),
        tsv=report(
            f"{RESULTS}/report/scores.tsv",
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
        task=TASK.name,
        runs={run: fold_files(rules.train.output.oof, run) for run in RUNS},
    script:
        "../scripts/report_scores.py"


rule report_oof_run:
    input:
        truth=truth_table(),
        predictions=lambda wildcards: fold_files(rules.train.output.oof, wildcards.run),
    output:
        svg=report(
            f"{RESULTS}/report/oof/run-{{run}}.svg",
            caption="../report/oof.rst",
            category="OOF predictions",
            subcategory="{run}",
            labels={"figure": "truth vs prediction"},
        ),
        tsv=f"{RESULTS}/report/oof/run-{{run}}.tsv",
    log:
        f"logs/report_oof_run/{DS}-{{run}}.log",
    benchmark:
        f"benchmarks/report_oof_run/{DS}-{{run}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        task=TASK.name,
        title=lambda wildcards: f"Run {wildcards.run}",
    script:
        "../scripts/report_oof.py"


rule report_oof_ensemble:
    input:
        truth=truth_table(),
        predictions=rules.ensemble.output.oof,
    output:
        svg=report(
            f"{RESULTS}/report/oof/ensemble-{ENSEMBLE['name']}.svg",
            caption="../report/oof.rst",
            category="OOF predictions",
            subcategory=f"ensemble {ENSEMBLE['name']}",
            labels={"figure": "truth vs prediction"},
        ),
        tsv=f"{RESULTS}/report/oof/ensemble-{ENSEMBLE['name']}.tsv",
    log:
        f"logs/report_oof_ensemble/{DS}.log",
    benchmark:
        f"benchmarks/report_oof_ensemble/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        task=TASK.name,
        title=f"Ensemble {ENSEMBLE['name']}",
    script:
        "../scripts/report_oof.py"


rule report_learning_curves:
    input:
        metrics=lambda wildcards: fold_files(rules.train.output.metrics, wildcards.run),
    output:
        svg=report(
            f"{RESULTS}/report/learning_curves/{{run}}.svg",
            caption="../report/learning_curves.rst",
            category="Learning curves",
            subcategory="{run}",
            labels={"figure": "loss per epoch"},
        ),
        tsv=f"{RESULTS}/report/learning_curves/{{run}}.tsv",
    log:
        f"logs/report_learning_curves/{DS}-{{run}}.log",
    benchmark:
        f"benchmarks/report_learning_curves/{DS}-{{run}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        title=lambda wildcards: f"Learning curves of run {wildcards.run}",
    script:
        "../scripts/report_learning_curves.py"
