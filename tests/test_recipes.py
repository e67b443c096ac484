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

from affectflow.config_check import check_names
from affectflow.datasets import read_manifest
from affectflow.faces.config import stage_options
from affectflow.recipes import resolve_run
from affectflow.submission import expected_rows, validate_submission
from affectflow.tasks import task_spec
from affectflow.testing.recipes import tiny_recipe_config
from affectflow.train import check_runs

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
