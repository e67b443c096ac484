"""The paper recipes in config/recipes/: each validates as a whole config, cites its REFERENCE.md
row, and runs end to end on a tiny fixture of its data set's layout to a valid submission."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from affectflow.config.names import check_names
from affectflow.data import read_manifest
from affectflow.config.faces import stage_options
from affectflow.training.recipes import resolve_run
from affectflow.submission.write import expected_rows, validate_submission
from affectflow.tasks import task_spec
from affectflow.testing.recipes import tiny_recipe_config
from affectflow.training.fold import check_runs

from conftest import REPO, run_snakemake

RECIPES = ["emi_yu2024", "emi_hallmen2024", "eri_yu2023", "va_liu2023", "au_deng2023"]
REFERENCE = (REPO.parent / "shared" / "REFERENCE.md")


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / "recipes" / f"{name}.yaml").read_text())


def test_every_recipe_file_is_tested():
    assert sorted(p.stem for p in (REPO / "config" / "recipes").glob("*.yaml")) == sorted(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_is_a_valid_config(name):
    config = load(name)
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    check_names(config)
    check_runs(config["train"], config["features"])
    stage_options(config["faces"], fps=config["media"]["fps"])
    task = task_spec(config["dataset"]["task"])
    for run in config["train"]["runs"].values():
        settings = resolve_run(run)
        # a per-frame task needs per-frame models, a clip task clip models
        assert settings.get("model_params", {}).get("per_frame", False) == task.per_frame, run


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_cites_the_reference_row_it_implements(name):
    header = (REPO / "config" / "recipes" / f"{name}.yaml").read_text().split("\n\n")[0]
    cited = re.search(r'results row "([^"]+)"', header.replace("\n# ", " "))
    assert cited, f"{name}: no 'results row \"...\"' citation in the header"
    row = cited.group(1)
    if REFERENCE.exists():  # the digest lives beside the repository in this project
        table = [" | ".join(c.strip() for c in line.strip("|").split("|")) for line in REFERENCE.read_text().splitlines()
                 if line.startswith("| ")]
        assert row in table, f"{name} cites {row!r}, which is not a row of REFERENCE.md"


def build_fixture(task: str, root: Path) -> tuple[Path, dict]:
    """The tiny data set of the recipe's task, and the dataset options it needs."""
    from affectflow.testing import make_affwild2, make_reaction, make_vidmimic
    from affectflow.testing.datasets import SAMPLE_SUBMISSION_NAMES

    if task == "emi":
        return make_vidmimic(root, n_clips=14), {}
    if task == "eri":
        return make_reaction(root, layout="data_info", n_clips=14), {}
    make_affwild2(root, n_videos=12, two_person=True)
    return root, {"sample_file": str(root / SAMPLE_SUBMISSION_NAMES[task])}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_end_to_end_on_its_tiny_fixture(name, tmp_path):
    config = load(name)
    task = task_spec(config["dataset"]["task"])
    data, options = build_fixture(task.name, tmp_path / "data")
    tiny = tiny_recipe_config(config, data_root=data, weights_dir=tmp_path / "weights", name=f"tiny_{name}",
                              dataset_options=options)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(tiny, sort_keys=False))
    work = tmp_path / "work"
    # the default target: submission, data-quality report and the report's figures
    run_snakemake(work, "--cores", "2", "--configfile", str(configfile))

    submission = pd.read_csv(work / tiny["submission"], dtype={task.submission_key: str})
    assert list(submission.columns) == [task.submission_key, *task.targets]
    # what must be listed, read here from the fixture's own files (not through the readers)
    if task.name == "emi":
        labelled = set(pd.read_csv(data / "train_split.csv")["Filename"]) | set(pd.read_csv(data / "valid_split.csv")["Filename"])
        expected = sorted(str(int(p.stem)) for p in (data / "raw").glob("*.mp4") if int(p.stem) not in labelled)
        assert sorted(submission[task.submission_key], key=int) == sorted(expected, key=int)
    elif task.name == "eri":
        info = pd.read_csv(data / "data_info.csv", dtype={"File_ID": str})
        assert sorted(submission[task.submission_key]) == sorted(info.loc[info["Split"] == "Test", "File_ID"])
    else:
        sample = pd.read_csv(options["sample_file"])
        assert submission[task.submission_key].tolist() == sample["image_location"].tolist()
    values = submission[list(task.targets)].to_numpy(float)
    assert not pd.isna(values).any()
    assert ((values >= task.low) & (values <= task.high)).all()
    if task.binary:
        assert set(pd.unique(values.ravel())) <= {0.0, 1.0}
    # the validator accepts it too, against the manifest the workflow wrote
    results = work / "results" / f"tiny_{name}"
    manifest = read_manifest(results / "manifest.tsv")
    from affectflow.data.affwild2 import read_sample_frames

    sample_frames = read_sample_frames(options["sample_file"]) if "sample_file" in options else None
    assert validate_submission(work / tiny["submission"], task, expected_rows(task, manifest, sample_frames=sample_frames)) \
        == len(submission)
    # the ensemble wrote its members, weights summing to 1 per target, and its OOF score
    ensemble = results / "ensemble" / tiny["ensemble"]["name"]
    members = json.loads((ensemble / "members.json").read_text())
    for target, weights in members["weights"].items():
        assert set(weights) <= set(tiny["ensemble"]["members"])
        assert sum(weights.values()) == pytest.approx(1.0)
    score = json.loads((ensemble / "score.json").read_text())
    assert score["metric"] == task.metric and set(score["oof"]["per_target"]) == set(task.targets)
    # the report's figures exist for every run of the recipe, whatever the task
    report = results / "report"
    assert (report / "scores.svg").stat().st_size > 0
    for run in tiny["train"]["runs"]:
        assert (report / "learning_curves" / f"{run}.svg").stat().st_size > 0
        assert (report / "oof" / f"run-{run}.svg").stat().st_size > 0


def test_ground_truth_is_refused_for_tasks_other_than_emi():
    from affectflow.config.names import ConfigError

    config = load("va_liu2023")
    config["dataset"]["ground_truth"] = "labels.csv"
    with pytest.raises(ConfigError, match="dataset.ground_truth"):
        check_names(config)
