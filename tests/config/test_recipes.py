"""The paper recipes in config/recipes/: each validates as a whole config, cites its docs/methods.md
row, and runs end to end on a tiny fixture of its data set's layout to a valid submission."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from affectflow.config.faces import stage_options
from affectflow.config.names import check_names
from affectflow.config.runs import check_runs
from affectflow.tasks import task_spec
from affectflow.training.recipes import resolve_run

from conftest import REPO

RECIPES = ["emi_yu2024", "emi_hallmen2024", "eri_yu2023", "va_liu2023", "au_deng2023"]
METHODS = REPO / "docs" / "methods.md"  # the papers' figures table


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
def test_recipe_cites_the_methods_row_it_implements(name):
    header = (REPO / "config" / "recipes" / f"{name}.yaml").read_text().split("\n\n")[0]
    cited = re.search(r'results row "([^"]+)"', header.replace("\n# ", " "))
    assert cited, f"{name}: no 'results row \"...\"' citation in the header"
    row = cited.group(1)
    table = [" | ".join(c.strip() for c in line.strip("|").split("|")) for line in METHODS.read_text().splitlines()
             if line.startswith("| ")]
    assert row in table, f"{name} cites {row!r}, which is not a row of docs/methods.md"


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




def test_ground_truth_is_refused_for_tasks_other_than_emi():
    from affectflow.config.names import ConfigError

    config = load("va_liu2023")
    config["dataset"]["ground_truth"] = "labels.csv"
    with pytest.raises(ConfigError, match="dataset.ground_truth"):
        check_names(config)
