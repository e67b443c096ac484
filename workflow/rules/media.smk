# Media stage: probe every clip, audio to 16 kHz mono 16-bit, peak-normalised.


rule media:
    input:
        manifest=f"{RESULTS}/manifest.tsv",
    output:
        shard=f"{RESULTS}/media/shard-{{s}}.h5",
        qc=f"{RESULTS}/media/shard-{{s}}.qc.tsv",
    log:
        f"logs/media/{DS}-{{s}}.log",
    benchmark:
        f"benchmarks/media/{DS}-{{s}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    threads: JOB["media"]["cpus"]
    resources:
        gpu=JOB["media"]["gpu"],
        mem_mb=JOB["media"]["mem_mb"],
        runtime=JOB["media"]["runtime"],
    params:
        sample_rate=config["media"].get("sample_rate", 16000),
        peak_dbfs=config["media"].get("peak_dbfs", -3.0),
        max_seconds=config["media"].get("max_seconds"),
    script:
        "../scripts/media.py"
