# Faces stage: decode once at the configured fps, detect, crop 112x112, store per frame.


rule faces:
    input:
        media=f"{RESULTS}/media/shard-{{s}}.h5",
    output:
        shard=f"{RESULTS}/faces/{{detector}}/shard-{{s}}.h5",
        qc=f"{RESULTS}/faces/{{detector}}/shard-{{s}}.qc.tsv",
    log:
        f"logs/faces/{DS}-{{detector}}-{{s}}.log",
    benchmark:
        f"benchmarks/faces/{DS}-{{detector}}-{{s}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    resources:
        gpu=1,
    params:
        detector_params=FACES.get("params", {}),
        fps=config["media"].get("fps", 30),
        max_side=FACES.get("max_side", 640),
        batch_size=FACES.get("batch_size", 32),
        crop_size=FACES.get("crop_size", 112),
    script:
        "../scripts/faces.py"
