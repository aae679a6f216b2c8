"""A load's progress where analysts see it: a real terminal (a pty) and a real Jupyter kernel.

One display, updated in place: in a terminal one line rewritten with a carriage return (no
cursor movements, which JupyterLab ignores); in a kernel one display updated through its
display id. Both end with the report's numbers.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

import analytics_kit as ak

BIN = Path(sys.executable).parent


def read_all(fd: int, proc: subprocess.Popen, timeout: float = 120) -> str:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError("no output from the load for %s s" % timeout)
        try:
            data = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


def test_a_terminal_gets_one_line_rewritten_in_place(api, tmp_path):
    config = ak.guide_config(api.base_url)
    config["client"]["auth"].pop("api_key")
    (tmp_path / "api.json").write_text(json.dumps(config))
    api.inject("latency", path="/v1/events", seconds=0.3, times=3)  # a few updates to see
    primary, replica = pty.openpty()
    proc = subprocess.Popen([str(BIN / "analytics-kit"), "load", "--config", "api.json"], stdout=subprocess.PIPE,
                            stderr=replica, env={**os.environ, "API_KEY": api.api_key}, text=True)
    os.close(replica)
    terminal = read_all(primary, proc)
    out, _ = proc.communicate(timeout=120)
    os.close(primary)
    assert proc.returncode == 0, terminal
    assert "\x1b" not in terminal  # no cursor movement, no colours
    assert "/250 (" in terminal  # the API's total, with a percentage
    # the running line was rewritten in place, then cleared; the end is the report's numbers
    *running, end = terminal.replace("\r\n", "\n").split("\r")
    assert len(running) >= 2
    # events: 3 pages, and its last and first again before them (analytics_kit/fetch/newest.py)
    assert end.strip().splitlines() == ["customers: 20 rows, 1 request", "events: 250 rows, 5 requests"]
    assert "customers         20 rows       1 request   cursor" in out and "events           250 rows       5 requests  cursor" in out


def test_a_warning_in_a_terminal_starts_on_a_line_of_its_own(api, tmp_path):
    """A record logged mid-load was written after the progress line's last character ("...first answerWARNING")."""
    config = ak.guide_config(api.base_url)
    config["client"]["auth"].pop("api_key")
    (tmp_path / "api.json").write_text(json.dumps(config))
    api.inject("latency", path="/v1/events", seconds=0.6, times=1)  # the progress line is drawn before the warning
    api.inject("transform", path="/v1/events", offset=100, times=None,
               fn=lambda body, *_: {k: v for k, v in body.items() if k != "total"})  # warned: no total
    primary, replica = pty.openpty()
    proc = subprocess.Popen([str(BIN / "analytics-kit"), "load", "--config", "api.json"], stdout=subprocess.PIPE,
                            stderr=replica, env={**os.environ, "API_KEY": api.api_key}, text=True)
    os.close(replica)
    terminal = read_all(primary, proc)
    proc.communicate(timeout=120)
    os.close(primary)
    assert proc.returncode == 0, terminal
    before, warned, _ = terminal.partition("WARNING ")
    assert warned, terminal
    drawn = before.split("\r")
    # what stands before the record on its line: the progress line, then blanks over it
    assert len(drawn) >= 3 and drawn[-1] == "" and drawn[-2].strip() == "" and drawn[-3].strip(), terminal
    assert len(drawn[-2]) >= len(drawn[-3].rstrip())


KERNEL_CELL = """
import os
import analytics_kit as ak
api = ak.demo.serve(events=250, customers=20, seed=11)
os.environ["API_KEY"] = api.api_key
config = ak.guide_config(api.base_url)
first = ak.load(config, database="analytics.duckdb", progress=False)
api.advance(new=5, updated=3, deleted=2)
api.inject("latency", path="/v1/events", seconds=0.3, times=1)
report = ak.load(config, database="analytics.duckdb")
api.close()
report
"""


def run_in_kernel(code: str, cwd: Path) -> list[dict]:
    """The iopub messages of ``code`` run in a fresh IPython kernel (the one JupyterLab starts)."""
    jupyter_client = pytest.importorskip("jupyter_client")
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(cwd), env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        msg_id = client.execute(code)
        messages = []
        while True:
            msg = client.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return messages
            messages.append(msg)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_notebook_gets_one_display_updated_in_place(tmp_path):
    messages = run_in_kernel(KERNEL_CELL, tmp_path)
    kinds = [m["msg_type"] for m in messages]
    assert "error" not in kinds, [m["content"] for m in messages if m["msg_type"] == "error"]
    # nothing on stderr: no tqdm lines, no terminal escapes stored in the notebook
    streams = [m["content"]["text"] for m in messages if m["msg_type"] == "stream"]
    assert not [s for s in streams if "\x1b" in s or "\r" in s], streams

    shown = [m for m in messages if m["msg_type"] == "display_data"]
    assert len(shown) == 1  # one progress display for the whole load
    display_id = shown[0]["content"]["transient"]["display_id"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert updates and {u["content"]["transient"]["display_id"] for u in updates} == {display_id}
    # plain text is what nbval compares, and it does not follow updates: the display has none
    for message in shown + updates:
        assert set(message["content"]["data"]) == {"text/html"}
    # shown at the start, before any answer; then the API's total, and how far the load is
    first = shown[0]["content"]["data"]["text/html"]
    assert re.search(r"<b>Loading</b> \(incremental, started \d\d:\d\d:\d\d\) … setting up, or waiting for the "
                     "API's first answer", first), first
    running = [u["content"]["data"]["text/html"] for u in updates[:-1]]
    assert any("%</td>" in html for html in running), running
    # the load's end is the report's table; then the cell's report shows it, and the display keeps a line of totals
    # (a cell ending with the report showed two tables: helper-129)
    final, collapsed = updates[-2]["content"]["data"]["text/html"], updates[-1]["content"]["data"]["text/html"]
    assert "<b>Loaded</b> (incremental): 10 rows, 2 requests; each table's numbers are in the report" in collapsed
    assert "<table" not in collapsed
    assert messages.index(updates[-1]) < messages.index(next(m for m in messages if m["msg_type"] == "execute_result"))
    assert "<b>Loaded</b> (incremental)" in final
    assert ('<td style="text-align:left">customers</td><td style="text-align:right">0</td>'
            '<td style="text-align:right">1</td><td style="text-align:left">1 already loaded</td>') in final
    assert '<td style="text-align:left">events</td><td style="text-align:right">10</td>' in final

    result = next(m for m in messages if m["msg_type"] == "execute_result")["content"]["data"]
    assert set(result) == {"text/plain", "text/html"}
    assert result["text/plain"].startswith("LoadReport(mode='incremental', rows=10, requests=2, retries=0)")


SLOW_CELL = """
import os
import analytics_kit as ak
api = ak.demo.serve(events=400, customers=5, seed=11)
os.environ["API_KEY"] = api.api_key
api.set_latency(0.6)  # every answer: the load's first group of pages reaches dlt after seconds
report = ak.load(ak.guide_config(api.base_url), database="analytics.duckdb", concurrency=1)
api.close()
"""


def test_a_slow_api_shows_the_display_at_once_and_the_pages_as_they_arrive(tmp_path):
    """Pages reach dlt converted in groups of 2,000 records: with 2 s per answer a notebook showed nothing
    for 17 s of a 22 s load (helper-104). The display shows at the start, and counts records and requests as
    they come, from the cell's own thread of output (updates by the display's id)."""
    messages = run_in_kernel(SLOW_CELL, tmp_path)
    assert "error" not in [m["msg_type"] for m in messages]
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    updates = [m["content"]["data"]["text/html"] for m in messages if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1 and "waiting for the API's first answer" in shown[0]["content"]["data"]["text/html"]
    running = updates[:-1]
    fetched = [int(n.replace(",", "")) for html in running
               for n in re.findall(r'>events</td><td style="text-align:right">([\d,]+)</td>', html)]
    # 400 events in 4 pages 0.6 s apart (after the reads of the newest record): counted as they arrive,
    # never more than the listing holds, rising, and seen between its first page and its last
    assert fetched == sorted(fetched) and fetched[-1] <= 400, fetched
    assert any(0 < n < 400 for n in fetched), fetched
    # the API's total as soon as its first page came, before the reads of the newest record (helper-105)
    assert any('>events</td><td style="text-align:right">0</td><td style="text-align:right">400</td>' in html
               for html in running), running
    assert "<b>Loaded</b> (incremental)" in updates[-1]


def test_a_listing_paged_again_shows_that_pass_against_the_total():
    """The passes added up showed "89/59 (100%)" while the second pass had fetched 30 (helper-106)."""
    import io

    from analytics_kit.fetch.stats import LoadStats
    from analytics_kit.run.progress import Progress

    stats = LoadStats()
    shown = Progress(stats, stream=io.StringIO())
    stats.request("events", "GET /v1/events")
    stats.paged("events")
    stats.total("events", 59)
    stats.arrive("events", 59)
    assert shown._running("events", short=True) == "events 59/59 (100%)"
    stats.paged("events")
    stats.arrive("events", 30)
    assert shown._running("events", short=True) == "events 30/59 (50%, pass 2)"
    assert shown._running("events").startswith("events: 30 of 59 rows (50%), pass 2, ")
    assert "50%, pass 2" in shown._running_html()
    stats.paged("orders")
    stats.arrive("orders", 7)
    stats.paged("orders")
    stats.arrive("orders", 3)
    assert shown._running("orders", short=True) == "orders 3 rows (pass 2)"
    stats.arrive("events", 40)  # a total too low (helper-111: "60/35 (100%, pass 2)")
    assert shown._running("events", short=True) == "events 70 rows (the API's total said 59, pass 2)"
    assert shown._running("events").startswith("events: 70 rows (the API's total said 59), pass 2, ")
    assert "past the API&#x27;s total, pass 2" in shown._running_html()
    # a resource asked once per parent record: its rows add up over listings that each have a total (helper-112)
    stats.children.add("subs")
    stats.request("subs", "GET /v1/things/1/subs")
    stats.total("subs", 25)
    stats.arrive("subs", 40)
    assert shown._running("subs", short=True) == "subs 40 rows"
