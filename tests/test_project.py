"""The project's own promises: pinned public surface, documented names, one set of dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

import analytics_kit as ak
from analytics_kit.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

# conda-forge names that differ from PyPI's.
CONDA_TO_PYPI = {"python-duckdb": "duckdb", "psycopg2": "psycopg2-binary"}


def test_public_surface_changes_only_on_purpose():
    assert ak.__all__ == sorted(ak.__all__)
    assert ak.__all__ == [
        "ConfigError", "KitError", "LoadError", "LoadReport", "MissingSecretError", "RetryPolicy",
        "build_source", "demo", "describe", "guide", "guide_config", "load", "notebook", "query", "state", "tables",
    ]
    assert issubclass(ak.ConfigError, ValueError) and issubclass(ak.MissingSecretError, ValueError)


def test_every_public_name_and_command_is_documented():
    for name in ak.__all__:
        assert f"`{name}" in README or f"{name}(" in README, f"README does not mention {name}"
        obj = getattr(ak, name)
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in commands:
        assert f"analytics-kit {command}" in README, f"README does not show `analytics-kit {command}`"


def _requirement(text: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", text)
    assert match, text
    name = match.group(1).lower().replace("_", "-")
    return CONDA_TO_PYPI.get(name, name), match.group(3).replace(" ", "")


def test_environment_yml_and_pyproject_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pyproject = dict(
        _requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    )
    conda: dict[str, str] = {}
    for entry in yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]:
        if isinstance(entry, dict):
            for pip_entry in entry["pip"]:
                if not pip_entry.startswith("-e"):
                    conda.update([_requirement(pip_entry)])
        elif not entry.startswith(("python>", "python=", "pip")) or entry.startswith("python-"):
            conda.update([_requirement(entry)])
    assert conda == pyproject


def test_constraints_pin_what_pyproject_asks_for():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    from packaging.specifiers import SpecifierSet

    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, spec = _requirement(requirement)
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert pins[name] in SpecifierSet(spec), f"{name}=={pins[name]} is outside {spec}"
