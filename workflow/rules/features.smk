# Features stage: one backbone over one shard, cached as (T, D) per clip in HDF5.


rule features:
    input:
        unpack(feature_inputs()),
    output:
        shard=f"{RESULTS}/features/{{backbone}}/shard-{{s}}.h5",
    log:
        f"logs/features/{DS}-{{backbone}}-{{s}}.log",
    benchmark:
        f"benchmarks/features/{DS}-{{backbone}}-{{s}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    threads: JOB["features"]["cpus"]
    resources:
        gpu=JOB["features"]["gpu"],
        mem_mb=JOB["features"]["mem_mb"],
        runtime=JOB["features"]["runtime"],
    params:
        # batch size, workers and device change speed only: the job reads them from the config,
        # so they are no re-run trigger
        signature=feature_signature,
    script:
        "../scripts/features.py"
