# Features stage: one backbone over one shard, cached as (T, D) per clip in HDF5.


rule features:
    input:
        source=backbone_source,
    output:
        shard=f"{RESULTS}/features/{{backbone}}/shard-{{s}}.h5",
    params:
        signature=backbone_params,
    resources:
        gpu=1,
    log:
        f"logs/features/{DS}-{{backbone}}-{{s}}.log",
    benchmark:
        f"benchmarks/features/{DS}-{{backbone}}-{{s}}.tsv"
    conda:
        "../../envs/features.yaml"
    script:
        "../scripts/features.py"
