"""Searching everything a run left behind for a secret: errors and their tracebacks with
locals, logs and captured output, files (DuckDB tables column by column, the decoded pipeline
state, pickled traces, parquet), so that tests can assert a canary key appears nowhere.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import duckdb

REPO = Path(__file__).resolve().parents[1]
KIT = str(REPO / "analytics_kit")
SITE = sysconfig.get_paths()["purelib"]
# Frames whose locals a traceback with locals would show. The test's own frames hold the
# config legitimately, so they are not searched.
SEARCHED_FRAMES = (KIT, *(os.path.join(SITE, name) for name in ("dlt", "requests", "urllib3")))


def needles(canary: str) -> dict[str, str]:
    """The forms of a secret to look for: plain, URL-encoded and form-encoded."""
    return {"canary": canary, "URL-encoded canary": quote(canary, safe=""), "form-encoded canary": quote_plus(canary)}


@dataclass
class Search:
    """Every place searched, and where a needle was found."""

    needles: dict[str, str]
    places: int = 0
    hits: list[str] = field(default_factory=list)

    def text(self, where: str, text: str) -> None:
        self.places += 1
        found = [(name, text.index(needle), needle) for name, needle in self.needles.items() if needle in text]
        if found:
            names = ", ".join(name for name, _, _ in found)
            _, at, needle = found[0]
            self.hits.append(f"{where}: {names} in ...{text[max(0, at - 150):at + len(needle) + 30]!r}...")

    def raw(self, where: str, data: bytes) -> None:
        self.text(where, data.decode("utf-8", "replace"))
        if data[:2] == b"\x1f\x8b":
            self.text(f"{where} (gunzipped)", gzip.decompress(data).decode("utf-8", "replace"))


def chain(error: BaseException) -> list[BaseException]:
    seen, todo, out = set(), [error], []
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        todo += [current.__cause__, current.__context__, getattr(current, "exception", None)]
    return out


def search_error(search: Search, where_: str, error: BaseException, caller_config: Any = None) -> None:
    """The exception, its whole chain, and its tracebacks with the locals of library frames."""
    for i, link in enumerate(chain(error)):
        where = f"{where_}: exception #{i} {type(link).__name__}"
        search.text(f"{where} str", str(link))
        search.text(f"{where} repr", repr(link))
        search.text(f"{where} args", repr(link.args))
        search.text(f"{where} __dict__", repr(getattr(link, "__dict__", {})))
        search.text(f"{where} notes", repr(getattr(link, "__notes__", [])))
    search.text(f"{where_}: formatted traceback", "".join(traceback.format_exception(error)))
    formatted = traceback.TracebackException.from_exception(error, capture_locals=True)
    todo, seen = [(formatted, "")], set()
    while todo:
        te, how = todo.pop(0)
        if te is None or id(te) in seen:
            continue
        seen.add(id(te))
        # A context raised "from None" is not printed, but it is still there for debuggers,
        # error trackers and anything else that walks the chain.
        context = " (suppressed context)" if te.__suppress_context__ else " (context)"
        todo += [(te.__cause__, how + " (cause)"), (te.__context__, how + context)]
        for frame in te.stack:
            if not frame.filename.startswith(SEARCHED_FRAMES):
                continue
            # The caller's own config dict, passed down as an argument, is not a leak.
            own = {name for name, value in (frame.locals or {}).items()
                   if caller_config is not None and value == repr(caller_config)}
            locals_ = {k: v for k, v in (frame.locals or {}).items() if k not in own}
            search.text(f"{where_}: traceback{how} frame {os.path.relpath(frame.filename, SITE if frame.filename.startswith(SITE) else REPO)}"
                        f":{frame.lineno} {frame.name}() locals", repr(locals_))


def search_duckdb(search: Search, path: Path) -> None:
    from dlt.pipeline.state_sync import decompress_state

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return  # not a database (the raw bytes were searched anyway)
    with con:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for schema, table in tables:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [schema, table]).fetchall()]
            for column in columns:
                values = con.execute(f"SELECT CAST({q(column)} AS VARCHAR) FROM {q(schema)}.{q(table)}").fetchall()
                search.text(f"{path.name} table {schema}.{table} column {column}",
                            "\n".join(v for (v,) in values if v is not None))
            if table == "_dlt_pipeline_state":
                for (blob,) in con.execute(f"SELECT state FROM {q(schema)}.{q(table)}").fetchall():
                    search.text(f"{path.name} {schema}.{table}.state decoded", json.dumps(decompress_state(blob)))


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _walk(obj: Any, depth: int = 0, seen: set | None = None) -> list[str]:
    """Every string reachable from ``obj`` (for unpickled traces)."""
    seen = set() if seen is None else seen
    if depth > 25 or id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, (str, bytes)):
        return [obj if isinstance(obj, str) else obj.decode("utf-8", "replace")]
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _walk(k, depth + 1, seen) + _walk(v, depth + 1, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            out += _walk(v, depth + 1, seen)
    elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        for name in list(getattr(obj, "__dict__", {})) + list(getattr(obj, "__slots__", ())):
            out += _walk(getattr(obj, name, None), depth + 1, seen)
    return out


def search_files(search: Search, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        where = f"file {path.relative_to(root)}"
        search.raw(where, path.read_bytes())
        if path.suffix == ".duckdb":
            search_duckdb(search, path)
        elif path.name.endswith(".pickle"):
            with path.open("rb") as f:
                trace = pickle.load(f)
            search.text(f"{where} unpickled repr", repr(trace))
            search.text(f"{where} unpickled, every string", "\n".join(_walk(trace)))
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            search.text(f"{where} as a table", str(pq.read_table(path).to_pylist()))
