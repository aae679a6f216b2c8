"""The teaching notebooks as files and as a kernel runs them (nbval compares their outputs;
these are the checks nbval does not make)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# Code cells that show nothing on purpose.
SILENT = {
    "nb01-05": "the config dict: it holds the key, so the cell prints nothing",
    "nb01-30": "clean up", "nb02-40": "clean up", "nb03-29": "clean up",
}


def cells(book: Path) -> list[dict]:
    return [c for c in json.loads(book.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("book", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_hold_no_terminal_control_codes(book: Path):
    """A terminal's escape codes and carriage returns show as garbage in a stored notebook."""
    for cell in cells(book):
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", [])) + json.dumps(output.get("data", {}))
            assert "\x1b" not in text and "\\u001b" not in text, (cell["id"], output)
            assert "\r" not in "".join(output.get("text", [])), (cell["id"], output)


@pytest.mark.parametrize("book", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_shows_what_it_did(book: Path):
    """A cell that promises a result shows one (03's "plain SQL" once only assigned a string)."""
    quiet = [c["id"] for c in cells(book) if not c.get("outputs") and c["id"] not in SILENT]
    assert not quiet, f"code cells without output: {quiet}"


def run_twice(book: Path) -> tuple[list, list]:
    """Run All, then Run All again, in one kernel; what each run showed, as nbval compares it."""
    import jupyter_client

    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(book.parent), env={k: v for k, v in os.environ.items()
                                                    if k not in ("API_KEY", "ANALYTICS_API_BASE_URL")})
    client = manager.client()
    client.start_channels()
    runs: list[list] = []
    try:
        client.wait_for_ready(timeout=60)
        for _ in range(2):
            shown = []
            for cell in cells(book):
                msg_id = client.execute("".join(cell["source"]))
                streaming = False  # the kernel splits a cell's stdout into messages as its flush timer fires
                while True:
                    msg = client.get_iopub_msg(timeout=300)
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    kind, content = msg["msg_type"], msg["content"]
                    if kind == "status" and content["execution_state"] == "idle":
                        break
                    assert kind != "error", (book.name, cell["id"], content.get("ename"), content.get("evalue"))
                    if kind in ("execute_result", "display_data") and "text/plain" in content["data"]:
                        shown.append((cell["id"], content["data"]["text/plain"]))
                        streaming = False
                    elif kind == "stream" and content["name"] == "stdout":
                        if streaming:  # one text, however the kernel cut it into messages
                            shown[-1] = (cell["id"], shown[-1][1] + content["text"])
                        else:
                            shown.append((cell["id"], content["text"]))
                        streaming = True
            runs.append(shown)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return runs[0], runs[1]


@pytest.mark.slow
@pytest.mark.parametrize("book", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_runs_all_twice_in_one_kernel_with_the_same_results(book: Path):
    first, second = run_twice(book)
    assert first and second == first


USERS_KEY = "users-own-key-7f3e91"


@pytest.mark.parametrize(("book", "place"), [(b, p) for b in NOTEBOOKS for p in ("API_KEY", "secrets section")],
                         ids=lambda v: v.stem if isinstance(v, Path) else v)
def test_run_all_against_the_users_own_api_runs_every_cell(tmp_path: Path, book: Path, place: str):
    """README: with ANALYTICS_API_BASE_URL set and the key in API_KEY (or dlt's secrets) the notebooks run against
    that API, cells that need the demo's controls skipping themselves. Notebook 2 stopped at its request log
    (None.groupby); notebook 1 with the key under [sources.analytics.credentials], which its first cell counted, at
    dlt.secrets["api_key"] (helper-147). A demo API stands in for the user's."""
    import nbformat
    from nbclient import NotebookClient

    from analytics_kit import demo

    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "ANALYTICS_API_BASE_URL")}
    if place == "API_KEY":
        env["API_KEY"] = USERS_KEY
    else:
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "secrets.toml").write_text(f'[sources.analytics.credentials]\napi_key = "{USERS_KEY}"\n')
    notebook = nbformat.read(book, as_version=4)
    with demo.serve(api_key=USERS_KEY, events=400, customers=20) as api:
        env["ANALYTICS_API_BASE_URL"] = api.base_url
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)  # the kernel's environment
        try:
            NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(tmp_path)}}).execute()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert api.requests, "the notebook did not use the user's API"
    errors = [(c.get("id"), o.get("ename"), o.get("evalue")) for c in notebook.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    shown = json.dumps([c.get("outputs", []) for c in notebook.cells if c.cell_type == "code"])
    assert USERS_KEY not in shown
