# Predict stage: the trained ensemble on any videos (predict.videos). Media, faces and features as
# for the data set (the same jobs, on the videos' own shards under predict.out), each member's fold
# models through the test split's prediction step, the fitted ensemble through its apply step; then
# per video a table and a timeline plot, and one page. Nothing here trains: the fold models and the
# fitted ensemble are this run's (trained first if missing) or a bundle's (predict.bundle).
from affectflow.config.runs import modality_backbones
from affectflow.predict.bundle import bundle_backbones, bundle_config, bundle_runs
from affectflow.predict.videos import PREDICT_SPLIT

if PREDICT_LISTING is not None:

    use rule media as predict_media with:
        input:
            demo=[],
        output:
            shard=f"{PREDICT_DIR}/media/shard-{{s}}.h5",
            qc=f"{PREDICT_DIR}/media/shard-{{s}}.qc.tsv",
        log:
            f"{PREDICT_DIR}/logs/media/{{s}}.log",
        benchmark:
            f"{PREDICT_DIR}/benchmarks/media/{{s}}.tsv"
        threads: PREDICT_JOB["media"]["cpus"]
        resources:
            gpu=PREDICT_JOB["media"]["gpu"],
            mem_mb=PREDICT_JOB["media"]["mem_mb"],
            runtime=PREDICT_JOB["media"]["runtime"],
        params:
            clips=lambda wildcards: PREDICT_LISTING.shard_clips(wildcards.s),
            root=PREDICT_LISTING.root,

    use rule faces as predict_faces with:
        input:
            media=rules.predict_media.output.shard,
        output:
            shard=f"{PREDICT_DIR}/faces/{{detector}}/shard-{{s}}.h5",
            qc=f"{PREDICT_DIR}/faces/{{detector}}/shard-{{s}}.qc.tsv",
        log:
            f"{PREDICT_DIR}/logs/faces/{{detector}}-{{s}}.log",
        benchmark:
            f"{PREDICT_DIR}/benchmarks/faces/{{detector}}-{{s}}.tsv"
        threads: PREDICT_JOB["faces"]["cpus"]
        resources:
            gpu=PREDICT_JOB["faces"]["gpu"],
            mem_mb=PREDICT_JOB["faces"]["mem_mb"],
            runtime=PREDICT_JOB["faces"]["runtime"],

    use rule features as predict_features with:
        input:
            unpack(feature_inputs(videos=True)),
        output:
            shard=f"{PREDICT_DIR}/features/{{backbone}}/shard-{{s}}.h5",
        log:
            f"{PREDICT_DIR}/logs/features/{{backbone}}-{{s}}.log",
        benchmark:
            f"{PREDICT_DIR}/benchmarks/features/{{backbone}}-{{s}}.tsv"
        threads: PREDICT_JOB["features"]["cpus"]
        resources:
            gpu=PREDICT_JOB["features"]["gpu"],
            mem_mb=PREDICT_JOB["features"]["mem_mb"],
            runtime=PREDICT_JOB["features"]["runtime"],

    # the videos' rows as the test manifest's (per-frame tasks: each video's frame rate and count)
    rule predict_manifest:
        output:
            manifest=f"{PREDICT_DIR}/manifest.tsv",
        log:
            f"{PREDICT_DIR}/logs/manifest.log",
        benchmark:
            f"{PREDICT_DIR}/benchmarks/manifest.tsv"
        conda:
            "../../envs/affectflow.yaml"
        params:
            clips=PREDICT_LISTING.partition_clips(
                PREDICT_SPLIT, fingerprints=TASK.per_frame
            ),
            root=PREDICT_LISTING.root,
            per_frame=TASK.per_frame,
        script:
            "../scripts/predict_manifest.py"

    # one fold model of one member on the videos: the test split's prediction step
    use rule predict_test as predict_fold with:
        input:
            model=f"{TRAIN_DIR}/{{run}}/fold{{k}}/model.pt",
            config=f"{TRAIN_DIR}/{{run}}/fold{{k}}/config.json",
            manifest=rules.predict_manifest.output.manifest,
            features=run_feature_shards(None, modality_backbones),
        output:
            test=f"{PREDICT_DIR}/runs/{{run}}/fold{{k}}.csv",
        log:
            f"{PREDICT_DIR}/logs/fold/{{run}}-{{k}}.log",
        benchmark:
            f"{PREDICT_DIR}/benchmarks/fold/{{run}}-{{k}}.tsv"
        threads: PREDICT_JOB["train"]["cpus"]
        resources:
            gpu=PREDICT_JOB["train"]["gpu"],
            mem_mb=PREDICT_JOB["train"]["mem_mb"],
            runtime=PREDICT_JOB["train"]["runtime"],

    # the fitted ensemble over the members' fold predictions: the test split's apply step
    use rule ensemble_test as predict_ensemble with:
        input:
            members=f"{ENSEMBLE_DIR}/members.json",
            folds=lambda wildcards: member_fold_paths(rules.predict_fold.output.test),
        output:
            test=f"{PREDICT_DIR}/predictions.csv",
        log:
            f"{PREDICT_DIR}/logs/ensemble.log",
        benchmark:
            f"{PREDICT_DIR}/benchmarks/ensemble.tsv"
        params:
            tables=lambda wildcards: member_fold_tables(rules.predict_fold.output.test),

    rule predict_outputs:
        input:
            predictions=rules.predict_ensemble.output.test,
            manifest=rules.predict_manifest.output.manifest,
            media_qc=expand(rules.predict_media.output.qc, s=PREDICT_LISTING.shards),
            faces=expand(
                rules.predict_faces.output.shard,
                detector=FACES["detector"],
                s=PREDICT_LISTING.shards,
            ),
            faces_qc=expand(
                rules.predict_faces.output.qc,
                detector=FACES["detector"],
                s=PREDICT_LISTING.shards,
            ),
        output:
            videos=directory(f"{PREDICT_DIR}/videos"),
            summary=f"{PREDICT_DIR}/summary.csv",
            page=f"{PREDICT_DIR}/index.html",
        log:
            f"{PREDICT_DIR}/logs/outputs.log",
        benchmark:
            f"{PREDICT_DIR}/benchmarks/outputs.tsv"
        conda:
            "../../envs/affectflow.yaml"
        params:
            task=TASK.name,
            # the ensemble's name and where its models come from, for the page's header
            title=f"{ENSEMBLE['name']} ({TASK.name}) from {BUNDLE or TRAIN_DIR}",
        script:
            "../scripts/predict_outputs.py"

    rule predict:
        input:
            rules.predict_outputs.output.page,
            rules.predict_outputs.output.summary,

else:

    rule predict:
        input:
            lambda wildcards: no_videos(),


# A trained ensemble as a folder another checkout predicts with (affectflow bundle): its config,
# the fold models of its members (and of the fine-tuning runs their features come from), the
# fitted ensemble, each backbone's signature (weights checksums, not the weights), the manifest's
# checksum and the package version.
rule bundle:
    input:
        folds=lambda wildcards: [
            path
            for run in bundle_runs(ENSEMBLE["members"], RUNS, config["features"])
            for path in fold_model_files(run, range(fold_count(run)))
        ],
        members=rules.ensemble.output.members,
        score=rules.ensemble.output.score,
        manifest=rules.manifest.output.manifest,
    output:
        bundle=directory(f"{RESULTS}/bundle/{ENSEMBLE['name']}"),
    log:
        f"logs/bundle/{DS}.log",
    benchmark:
        f"benchmarks/bundle/{DS}.tsv"
    conda:
        "../../envs/affectflow.yaml"
    params:
        # where to predict and the cluster's sizes are the user's, not the model's
        config=bundle_config(GIVEN_CONFIG),
        train_dir=TRAIN_DIR,
        runs=lambda wildcards: {
            run: fold_count(run)
            for run in bundle_runs(ENSEMBLE["members"], RUNS, config["features"])
        },
        backbones=lambda wildcards: {
            key: cached_feature_signature(key, config["features"][key])
            for key in bundle_backbones(ENSEMBLE["members"], RUNS, config["features"])
        },
    script:
        "../scripts/export_bundle.py"
