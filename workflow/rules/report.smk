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
