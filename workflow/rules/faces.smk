# Faces stage: decode once at the configured fps, detect, choose the main face, fill missing
# faces, sample, crop aligned 112x112, store per frame.
from affectflow.config.faces import stage_options

# Checked here, at start-up: a bad option or unknown fallback detector fails before any job.
FACE_OPTIONS = stage_options(FACES, fps=config["media"].get("fps", 30))


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
    threads: JOB["faces"]["cpus"]
    resources:
        gpu=JOB["faces"]["gpu"],
        mem_mb=JOB["faces"]["mem_mb"],
        runtime=JOB["faces"]["runtime"],
    params:
        detector_params=FACES.get("params", {}),
        fps=config["media"].get("fps", 30),
        max_side=FACES.get("max_side", 640),
        batch_size=FACES.get("batch_size", 32),
        crop_size=FACES.get("crop_size", 112),
        options=FACE_OPTIONS,
    script:
        "../scripts/faces.py"
