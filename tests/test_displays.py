"""How results show in a notebook, formatted by IPython's own display formatter.

JupyterLab shows the richest form (HTML, or Markdown with a mermaid diagram); nbval compares
the plain text of stored outputs, so that text stays what a terminal prints, and no form
holds anything that changes from run to run (paths, ports, load ids, times, durations).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter

import analytics_kit as ak
from analytics_kit import demo
from analytics_kit.fetch.stats import RetryEvent

from helpers import fast

FORMATTER = DisplayFormatter()


def shown(obj: object) -> dict[str, str]:
    data, _ = FORMATTER.format(obj)
    return data


def two_loads(database: str) -> tuple[ak.LoadReport, ak.LoadReport]:
    with demo.serve(events=250, customers=20, seed=11) as api:
        config = fast(ak.guide_config(api.base_url))
        config["client"]["auth"]["api_key"] = api.api_key
        first = ak.load(config, database=database, progress=False)
        api.advance(new=5, updated=3, deleted=2)
        return first, ak.load(config, database=database, progress=False)


LOAD_IDS: list[str] = []


def everything(database: str) -> dict[str, dict[str, str]]:
    first, second = two_loads(database)
    LOAD_IDS.extend([first.load_id, second.load_id])
    return {"first": shown(first), "second": shown(second), "summary": shown(second.summary()),
            "state": shown(ak.state(database)), "tables": shown(ak.tables(database)),
            "schema": shown(ak.schema(database)), "diagram": shown(ak.schema(database).diagram)}


@pytest.fixture(scope="module")
def displays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return everything(str(tmp_path_factory.mktemp("displays") / "analytics.duckdb"))


def test_load_report_is_a_table_in_a_notebook_and_text_elsewhere(displays):
    report = displays["second"]
    assert set(report) == {"text/plain", "text/html"}
    assert report["text/plain"].splitlines()[0] == "LoadReport(mode='incremental', rows=10, requests=2, retries=0)"
    # the boundary record at the stored cursor, fetched again and left out, is explained
    assert report["text/plain"].splitlines()[1].endswith("(1 already loaded)")
    html = report["text/html"]
    # the caption above the table, as wide as the output (a <caption> was wrapped to the table's width)
    assert 0 <= html.index("incremental · 10 rows · 2 requests · 0 retries") < html.index("<table")
    assert "<caption" not in html
    assert "<td style=\"text-align:left\">customers</td><td style=\"text-align:right\">0</td>" in html
    assert html.count("1 already loaded") == 2
    assert "1 already loaded" not in displays["first"]["text/plain"]


def test_html_escapes_what_the_api_sent():
    report = ak.LoadReport(mode="incremental", rows={"events": 1}, requests={"events": 1},
                           retries=(RetryEvent("events", "HTTP 503", 1, 4, 0.5, "GET /v1/<b>?api_key=***"),),
                           cursor_before={"events": None}, cursor_after={"events": "<script>x</script>"},
                           warnings=("events: the API's total=<img src=x onerror=alert(1)> is not a number",))
    html = shown(report)["text/html"]
    assert "<script>" not in html and "<img" not in html and "<b>?" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "&lt;img src=x" in html
    assert "HTTP 503 on GET /v1/&lt;b&gt;" in html


def test_summary_is_still_a_dict_and_shows_as_a_table(displays, api, config):
    report = ak.load(config, progress=False)
    summary = report.summary()
    assert isinstance(summary, dict) and summary["rows_events"] == 250 and summary["mode"] == "incremental"
    assert pd.DataFrame([summary, report.summary()]).shape == (2, len(summary))
    text = displays["summary"]["text/plain"].splitlines()
    assert text[0] == "mode                     incremental" and text[2] == "rows_events              10"
    assert "<td style=\"text-align:left\">rows_events</td><td style=\"text-align:left\">10</td>" in \
        displays["summary"]["text/html"]


def test_state_shows_cursors_and_loads_explained(displays):
    state = displays["state"]
    assert set(state) == {"text/plain", "text/html"}
    assert "status 0" not in state["text/plain"] and "committed" in state["text/plain"]
    assert "<b>Cursors</b>" in state["text/html"]
    assert '<td style="text-align:left">committed</td>' in state["text/html"]


def test_tables_keep_pandas_text_and_gain_a_caption(displays, api, config):
    ak.load(config, progress=False)
    tables = ak.tables()
    assert isinstance(tables, pd.DataFrame)
    assert shown(tables)["text/plain"] == repr(pd.DataFrame(tables))  # pandas' text, as stored outputs hold
    html = displays["tables"]["text/html"]
    assert "<b>2 tables</b> · 273 rows" in html and "█" in html and "_dlt_*" in html
    # a frame made from it is pandas' own again
    assert "<caption" not in shown(tables[["table"]])["text/html"]


def test_schema_shows_markdown_with_a_mermaid_diagram(displays):
    schema = displays["schema"]
    # no HTML: JupyterLab would prefer it to the Markdown, which draws the diagram
    assert set(schema) == {"text/plain", "text/markdown"}
    markdown = schema["text/markdown"]
    assert markdown.startswith("```mermaid\nerDiagram\n") and "\n```\n\n**customers**" in markdown
    assert "| id | bigint | no | PK | config |  |" in markdown
    assert displays["diagram"]["text/markdown"].startswith("```mermaid\nerDiagram")
    assert displays["diagram"]["text/plain"].startswith("erDiagram")


def test_every_display_is_the_same_on_every_run(displays, tmp_path: Path):
    again = everything(str(tmp_path / "again" / "analytics.duckdb"))
    assert again == displays
    for forms in displays.values():
        for text in forms.values():
            assert "/tmp" not in text and "127.0.0.1" not in text
            assert not [load_id for load_id in LOAD_IDS if load_id in text]
