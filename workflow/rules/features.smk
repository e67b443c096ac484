# Features stage: one backbone over one shard, cached as (T, D) per clip in HDF5.


rule features:
    input:
        source=backbone_source,
    output:
        shard=f"{RESULTS}/features/{{backbone}}/shard-{{s}}.h5",
    log:
        f"logs/features/{DS}-{{backbone}}-{{s}}.log",
    benchmark:
        f"benchmarks/features/{DS}-{{backbone}}-{{s}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    resources:
        gpu=1,
    params:
        signature=backbone_params,
    script:
        "../scripts/features.py"
