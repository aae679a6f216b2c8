"""The project's own promises: pinned public surface, documented names, one set of dependencies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import analytics_kit as ak
from analytics_kit.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()



def test_public_surface_changes_only_on_purpose():
    assert ak.__all__ == sorted(ak.__all__)
    assert ak.__all__ == [
        "ConfigError", "KitError", "LoadError", "LoadReport", "MissingSecretError", "QueryError", "RetryPolicy",
        "build_source", "demo", "describe", "guide", "guide_config", "history", "load", "notebook", "query", "schema",
        "state", "tables",
    ]
    assert issubclass(ak.ConfigError, ValueError) and issubclass(ak.MissingSecretError, ValueError)
    assert issubclass(ak.QueryError, ak.KitError) and issubclass(ak.QueryError, ValueError)


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
    return name, match.group(3).replace(" ", "")


def test_environment_yml_installs_the_tested_set():
    """The conda route installs what `make` does: Python from conda, then the kit with its dev
    extras under constraints.txt; no package from both conda and pip (psycopg2 was, twice)."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(conda) == ["pip", "python=3.11"], conda
    assert project["requires-python"] == ">=3.11"
    assert pip == ["-c constraints.txt", "-e .[dev]"], pip
    pins = _pins("constraints.txt")
    wanted = [_requirement(r)[0] for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    assert all(name in pins for name in wanted), [n for n in wanted if n not in pins]
    text = (REPO / "environment.yml").read_text()
    assert "conda activate analytics-kit" in text and "analytics-kit demo" in text  # what to run after


def _pins(file: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / file).read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_pin_what_pyproject_asks_for():
    pins = _pins("constraints.txt")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    from packaging.specifiers import SpecifierSet

    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, spec = _requirement(requirement)
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert pins[name] in SpecifierSet(spec), f"{name}=={pins[name]} is outside {spec}"


def test_constraints_oldest_pin_the_lower_bounds():
    """constraints-oldest.txt (make test-oldest) is the window's other end: every pin within
    pyproject's bounds, and the libraries the kit reaches into at their lower bound."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    pins = _pins("constraints-oldest.txt")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, spec = _requirement(requirement)
        assert pins[name] in SpecifierSet(spec), f"{name}=={pins[name]} is outside {spec}"
        if name in ("dlt", "duckdb", "numpy", "pandas", "pyarrow", "sqlglot"):
            lower = Version(next(s.version for s in SpecifierSet(spec) if s.operator == ">="))
            pinned = Version(pins[name]).release[:len(lower.release)]
            assert pinned == lower.release, f"{name}=={pins[name]} is not the lower bound {lower}"


def _block(language: str, after: str) -> str:
    """The first ```language block of the README after the line ``after``."""
    rest = README[README.index(after):]
    return rest.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readmes_python_steps_run_after_make_demo(tmp_path, monkeypatch):
    """The "In Python" block, as a new user runs it beside the analytics.duckdb ``make demo`` wrote (from
    another demo API): it loaded 1 row into make demo's tables (helper-104); it runs into its own file."""
    monkeypatch.chdir(tmp_path)
    for name in ("API_KEY", "ANALYTICS_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    with ak.demo.serve(events=300, seed=99) as other:
        monkeypatch.setenv("API_KEY", other.api_key)
        ak.load(ak.guide_config(other.base_url), progress=False)  # make demo's file, from another API
    code = _block("python", "## In Python")
    namespace: dict = {}
    try:
        exec(compile(code.replace("ak.demo.serve()", "ak.demo.serve(events=200)"), "README", "exec"), namespace)
        assert namespace["report"].rows["events"] == 200
        assert len(ak.query("SELECT * FROM events")) == 200  # quickstart.duckdb: the README's own file
    finally:
        if "api" in namespace:
            namespace["api"].close()
    assert len(ak.query("SELECT * FROM events", "analytics.duckdb")) == 300  # make demo's, untouched


def test_the_readmes_toml_config_loads(api, tmp_path):
    """The "From the shell" TOML, as written (the key from API_KEY), against the demo API."""
    toml = _block("toml", "## From the shell").replace("https://api.example.com", api.base_url)
    (tmp_path / "api.toml").write_text(toml)
    done = subprocess.run([str(Path(sys.executable).parent / "analytics-kit"), "load", "--quiet", "--config",
                           "api.toml"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in os.environ.items() if k != "ANALYTICS_DATABASE"},
                               "API_KEY": api.api_key})
    assert done.returncode == 0, done.stderr
    assert re.search(r"events +[\d,]+ rows", done.stdout), done.stdout
    assert len(ak.query("SELECT * FROM events", tmp_path / "analytics.duckdb")) == len(api.records("events"))
