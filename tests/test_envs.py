"""The pinned requirements agree everywhere they are written down."""

from __future__ import annotations

import re

import yaml

from conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_conda_env_pins_equal_the_lock():
    lock = _pins((REPO / "envs" / "requirements.lock").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs" / "affectflow.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == lock


def test_top_level_pins_are_in_the_lock():
    lock = _pins((REPO / "envs" / "requirements.lock").read_text().splitlines())
    top = _pins((REPO / "envs" / "requirements.txt").read_text().splitlines())
    assert top, "requirements.txt pins nothing"
    mismatched = {name: (version, lock.get(name)) for name, version in top.items() if lock.get(name) != version}
    assert not mismatched


def test_every_rule_names_an_existing_conda_env():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env}"
