# Media stage: probe every clip, audio to 16 kHz mono 16-bit, peak-normalised.


rule media:
    input:
        demo=demo_set(),
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
        # the shard's clips with their files' fingerprints: a new, removed or replaced video re-runs
        # this shard; the media shard records each video's path, so a new root re-runs it too
        clips=lambda wildcards: LISTING.shard_clips(wildcards.s),
        root=lambda wildcards: ROOT_PATH,
        sample_rate=config["media"]["sample_rate"],
        peak_dbfs=config["media"]["peak_dbfs"],
        max_seconds=config["media"]["max_seconds"],
    script:
        "../scripts/media.py"
