# Faces stage: decode once at the configured fps, detect, choose the main face, fill missing
# faces, sample, crop aligned 112x112, store per frame.


rule faces:
    input:
        media=rules.media.output.shard,
    output:
        shard=f"{RESULTS}/faces/{{detector}}/shard-{{s}}.h5",
        qc=f"{RESULTS}/faces/{{detector}}/shard-{{s}}.qc.tsv",
    log:
        f"logs/faces/{DS}-{{detector}}-{{s}}.log",
    benchmark:
        f"benchmarks/faces/{DS}-{{detector}}-{{s}}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    threads: JOB["faces"]["cpus"]
    resources:
        gpu=JOB["faces"]["gpu"],
        mem_mb=JOB["faces"]["mem_mb"],
        runtime=JOB["faces"]["runtime"],
    params:
        detector_params=FACES["params"],
        fps=config["media"]["fps"],
        max_side=FACES["max_side"],
        batch_size=FACES["batch_size"],
        crop_size=FACES["crop_size"],
        options=FACE_OPTIONS,
    script:
        "../scripts/faces.py"
