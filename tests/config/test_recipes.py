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


DIFFERENCES = "# Differences from the paper (what; why; expected effect):"
SILENT = "# Silent in the paper (our choice):"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_header_lists_its_differences_and_its_own_choices(name):
    header = (REPO / "config" / "recipes" / f"{name}.yaml").read_text().split("\n\n")[0].splitlines()
    assert DIFFERENCES in header and any(line.startswith(SILENT) for line in header), name
    start = header.index(DIFFERENCES) + 1
    items = []
    for line in header[start:]:
        if not line.startswith("#   "):
            break
        if line.startswith("#   - "):
            items.append(line)
        else:  # a continuation line of the item above
            items[-1] += " " + line[4:].strip()
    assert items, f"{name}: no difference listed (write 'none known' as an item if there is none)"
    for item in items:
        # each says what differs, why, and what to expect of the figure
        assert ";" in item and re.search(r"expect|effect|small|none|lower|higher|unknown", item), (name, item)


def test_readme_recipe_table_has_a_differences_column_naming_every_recipe():
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| ")]
    head = next(line for line in lines if "| recipe |" in line)
    columns = [c.strip() for c in head.strip("|").split("|")]
    assert "differences from the paper" in columns
    at = columns.index("differences from the paper")
    rows = {re.search(r"`(\w+)`", line).group(1): [c.strip() for c in line.strip("|").split("|")]
            for line in lines if any(f"`{r}`" in line.split("|")[2] for r in RECIPES if len(line.split("|")) > 2)}
    assert sorted(rows) == sorted(RECIPES)
    for name, cells in rows.items():
        assert len(cells[at]) > 20, name


def test_nothing_says_not_built_in_of_a_backbone_that_is():
    from affectflow.features import backbones  # noqa: F401  (registers the built-in backbones)
    from affectflow.features.registry import list_backbones

    papers_names = {"IResNet100": "iresnet100_512", "ECAPA": "ecapa_tdnn192", "VGGish": "vggish128", "MAE": "mae_vit"}
    texts = [REPO / "README.md", METHODS, *(REPO / "config" / "recipes").glob("*.yaml")]
    for path in texts:
        text = " ".join(path.read_text().replace("#", " ").split())
        for sentence in re.split(r"(?<=[.;])\s", text):
            if re.search(r"not built[ -]in|exists? nowhere|not a backbone", sentence, re.I):
                for paper_name, backbone in papers_names.items():
                    assert not (paper_name in sentence and backbone in list_backbones()), (path.name, sentence)
                for backbone in list_backbones():
                    assert f"`{backbone}`" not in sentence, (path.name, sentence)


def build_fixture(task: str, root: Path) -> tuple[Path, dict]:
    """The tiny data set of the recipe's task, and the dataset options it needs."""
    from affectflow.testing import make_affwild2, make_reaction, make_vidmimic
    from affectflow.testing.datasets import SAMPLE_SUBMISSION_NAMES

    if task == "emi":
        return make_vidmimic(root, n_clips=14), {}
    if task == "eri":
        return make_reaction(root, layout="data_info", n_clips=14), {}
    # short videos: nothing is learned here (tests/training/test_recipes_learn.py checks learning),
    # and the per-frame recipes run four to eight backbones on every frame
    make_affwild2(root, n_videos=12, two_person=True, seconds=(0.6, 1.0))
    return root, {"sample_file": str(root / SAMPLE_SUBMISSION_NAMES[task])}




def test_ground_truth_is_refused_for_tasks_other_than_emi():
    from affectflow.config.names import ConfigError

    config = load("va_liu2023")
    config["dataset"]["ground_truth"] = "labels.csv"
    with pytest.raises(ConfigError, match="dataset.ground_truth"):
        check_names(config)
