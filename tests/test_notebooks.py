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
