"""``analytics-kit``: load, query, tables, state, history, schema, demo-api and demo from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from analytics_kit.errors import ConfigError, KitError, check_working_folder
from analytics_kit.interrupts import is_interrupt
from analytics_kit.output_stream import OutputFailed, flush_streams, guard_streams
from analytics_kit.store.database import DATABASE_ENV, DEFAULT_DATABASE, LOCK_WAIT_SECONDS

DATABASE_HELP = f"DuckDB file (default: ${DATABASE_ENV} if set, else %(default)s in the current folder)"
LOAD_EPILOG = """environment:
  API_KEY                 the API key, where dlt's secrets (e.g. .dlt/secrets.toml api_key) have none
  ANALYTICS_API_BASE_URL  the API's base URL: without --config, load uses the integration
                          guide's config for it
  ANALYTICS_DATABASE      the default DuckDB file (instead of ./analytics.duckdb)

examples:
  ANALYTICS_API_BASE_URL=https://api.example.com API_KEY=... analytics-kit load
  analytics-kit load --full-refresh --config api.toml"""


def read_config(path: str | None) -> dict[str, Any]:
    """The config dict from a TOML, YAML or JSON file, or the guide's config for $ANALYTICS_API_BASE_URL."""
    import tomllib

    from analytics_kit.config.guide import BASE_URL_ENV, guide_config

    if path is None:
        if not os.environ.get(BASE_URL_ENV):
            raise ConfigError(
                "no config given",
                guidance=f"Pass --config FILE (TOML, YAML or JSON), or set {BASE_URL_ENV} to use the "
                "integration guide's config. `analytics-kit demo` runs against the embedded demo API.",
            )
        return guide_config()
    file = Path(path)
    if not path.strip() or file.is_dir():  # "" read as ".", a folder as a file not found (helper-149)
        raise ConfigError(f"--config {path!r} names {'no file' if not path.strip() else 'a folder'}",
                          guidance="Pass the config file itself, e.g. --config config.toml (TOML, YAML or JSON).")
    if not file.exists():
        raise ConfigError(f"config file {file} not found", guidance="Check the --config path.")
    kind = file.suffix.lower()  # API.TOML too
    if kind and kind not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"unknown config file type {file.suffix!r}", guidance="Use .toml, .yaml, .yml or .json.")
    try:
        text = file.read_text(encoding="utf-8")  # a pipe (--config /dev/stdin, <(...)) can be read once
        # a name without a suffix (a pipe, /dev/stdin < file): its text tells JSON from TOML, and YAML last
        # (helper-150, helper-151)
        kind = kind or _sniffed(text)
        if kind == ".toml":
            data = tomllib.loads(text)
        elif kind == ".json":
            data = json.loads(text)
        else:
            data = _yaml(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as error:
        raise ConfigError(f"{file.name} is not valid {kind[1:].upper().replace('YML', 'YAML')}: {error}",
                          guidance="Fix the file's syntax.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file.name} must hold a mapping at the top level", guidance="See the README's config example.")
    return data


def _sniffed(text: str) -> str:
    """The suffix a config's text reads as."""
    import tomllib

    for kind, parse in ((".json", json.loads), (".toml", tomllib.loads)):
        try:
            parse(text)
            return kind
        except ValueError:  # tomllib's and json's errors are ValueErrors
            pass
    return ".yaml"


def _yaml(text: str) -> Any:
    """The YAML document in ``text``; a syntax error as a ValueError naming where it is, never the line itself:
    PyYAML quotes the line, and one holding the key printed it in a traceback (helper-118)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"{getattr(error, 'problem', None) or type(error).__name__}{where}") from None


# characters a terminal acts on: an ESC from the API's data recoloured or rewrote the terminal (helper-123)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """``text`` with the characters a terminal acts on written as escapes, as pandas shows a line break: \\x1b."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def _print_frame(frame: Any) -> None:
    from analytics_kit.read.frame_text import frame_text

    # in a terminal, columns past its width go on in blocks below (a history was about 230 characters
    # wide); piped, each row stays on one line for grep and cut
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    print(_printable(frame_text(frame, width)))


def cmd_load(args: argparse.Namespace) -> int:
    if args.lean:
        from analytics_kit.run.lean import import_load, skip_pandas_probe

        skip_pandas_probe()
        load = import_load()
    else:
        from analytics_kit.run.load import load

    report = load(
        read_config(args.config),
        mode="full_refresh" if args.full_refresh else "incremental",
        database=args.database,
        dataset=args.dataset,
        destination=args.destination,
        progress=not args.quiet,
        lock_timeout=args.lock_timeout,
    )
    print(_printable(repr(report)))  # its cursors and warnings quote the API's data
    print(f"took {report.timing()}; load id {report.load_id}")
    print(_printable(f"into {report.database}" + (f" ({report.created})" if report.created else "")))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from analytics_kit.read.query import printed_query

    _print_frame(printed_query(args.sql, database=args.database, destination=args.destination, dataset=args.dataset))
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from analytics_kit.read.query import tables

    _print_frame(tables(database=args.database, dataset=args.dataset, destination=args.destination))
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from analytics_kit.read.query import describe

    _print_frame(describe(args.table, database=args.database, dataset=args.dataset, destination=args.destination))
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    from analytics_kit.read.state import state

    current = state(database=args.database, dataset=args.dataset, destination=args.destination)
    print("cursors:")
    for resource, value in current["cursors"].items():
        print(_printable(f"  {resource}: {value}"))
    if not current["cursors"]:
        print("  (none)")  # was "(none): " (helper-143)
    print("last loads:")
    _print_frame(current["loads"])
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from analytics_kit.read.history import history

    frame = history(database=args.database, dataset=args.dataset, destination=args.destination, last=args.last)
    frame["loaded_at"] = frame["loaded_at"].dt.strftime("%Y-%m-%d %H:%M:%SZ")  # UTC, and said so
    _print_frame(frame)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from analytics_kit.read.schema import schema

    dictionary = schema(database=args.database, dataset=args.dataset, destination=args.destination)
    print(_printable(dictionary.mermaid if args.mermaid else repr(dictionary)))
    return 0


def cmd_demo_api(args: argparse.Namespace) -> int:
    from analytics_kit.demo.__main__ import main as demo_main

    return demo_main(args.demo_args, prog="analytics-kit demo-api")


def cmd_demo(args: argparse.Namespace) -> int:
    from analytics_kit.demo.job import run

    return run(database=args.database, events=args.events)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("analytics-kit")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its commands' too), its errors masked: a key typed as an argument went to stderr whole
    ("unrecognized arguments: --api-key sk_...", where the key was in API_KEY: helper-149)."""

    def error(self, message: str) -> NoReturn:
        from analytics_kit.redact import known_mask

        super().error(known_mask()(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="analytics-kit", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and dlt's debug log")
    parser.add_argument("--version", action="version", version=f"analytics-kit {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str, epilog: str | None = None) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sub = commands.add_parser(name, help=help, description=help, epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=handler)
        # after the command too (analytics-kit load --debug was "unrecognized": helper-118); SUPPRESS keeps the
        # top-level one's value where the command's is not given
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sub

    def where(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--database", default=DEFAULT_DATABASE, help=DATABASE_HELP)
        sub.add_argument("--destination", help="a dlt destination instead of the DuckDB file, e.g. postgres; "
                         "credentials from dlt secrets")
        sub.add_argument("--dataset", help="schema (default: main in the DuckDB file, analytics elsewhere)")

    load = command("load", cmd_load, "load the API into the DuckDB file (incremental unless --full-refresh)",
                   epilog=LOAD_EPILOG)
    load.add_argument("--full-refresh", action="store_true", help="drop this source's tables and cursors, reload all")
    load.add_argument("--config", help="config file: the guide's dict as TOML, YAML or JSON")
    load.add_argument("--quiet", action="store_true", help="no progress output")
    load.add_argument("--lock-timeout", type=float, default=LOCK_WAIT_SECONDS, metavar="SECONDS",
                      help=f"how long to wait for another load of the same database (default: {LOCK_WAIT_SECONDS:g})")
    where(load)
    query = command("query", cmd_query, "run SQL against the DuckDB file and print the result")
    query.add_argument("sql", help='e.g. "SELECT count(*) FROM analytics.events"')
    where(query)
    where(command("tables", cmd_tables, "list loaded tables and their row counts"))
    describe = command("describe", cmd_describe, "list a table's columns: name, type and whether it may be NULL")
    describe.add_argument("table", help="e.g. events (or analytics.events)")
    where(describe)
    where(command("state", cmd_state, "show cursor values and the last loads"))
    history = command("history", cmd_history, "one line per committed load: when, mode, rows per table, requests, "
                      "retries, duration, cursors before and after")
    history.add_argument("--last", type=int, default=None, help="only the newest N loads")
    where(history)
    schema = command("schema", cmd_schema, "the data dictionary: every table and column with its type, "
                     "nullability, primary key, parent table and source (config, inferred or dlt)")
    schema.add_argument("--mermaid", action="store_true", help="print the tables' diagram (mermaid erDiagram) instead")
    where(schema)
    demo_api = command("demo-api", cmd_demo_api, "serve the embedded demo analytics API on 127.0.0.1")
    demo_api.add_argument("demo_args", nargs=argparse.REMAINDER, help="see `analytics-kit demo-api --help`")
    demo = command("demo", cmd_demo, "the whole job on the embedded demo API: serve, load, show")
    demo.add_argument("--database", default=DEFAULT_DATABASE, help=DATABASE_HELP)
    demo.add_argument("--events", type=int, default=5000, help="events the demo API serves (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None, *, lean: bool = False) -> int:
    """Runs one command; returns its exit status.

    ``lean``: the process ends with the command (``run``), so a load may leave pyarrow without
    pandas and freeze dlt's modules out of the collector's way (``run/lean.py``). A caller in
    Python keeps its process as it was: pandas support and the collector untouched.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    try:
        # `demo-api --help` belongs to the demo server's own parser.
        if argv[:1] == ["demo-api"]:
            from analytics_kit.demo.__main__ import main as demo_main

            return demo_main(argv[1:], prog="analytics-kit demo-api")
        args = build_parser().parse_args(argv)
        args.lean = lean
        check_working_folder()  # `demo` resolved its paths before any public call did (helper-127)
        logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        with warnings.catch_warnings():  # a reader's warning as a line of the command's own
            warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)
            return args.handler(args)
    except KitError as error:
        if args is not None and args.debug:
            raise
        print(_printable(f"error: {error}"), file=sys.stderr)  # it may quote the API's own words (helper-127)
        return 130 if error.context.get("interrupted") else 1  # 130: as a shell reports a SIGINT
    except BaseException as error:
        if not is_interrupt(error):  # a KeyboardInterrupt, or one wrapped while a lazy import ran
            raise
        said = str(error) if isinstance(error, KeyboardInterrupt) else ""
        print(f"interrupted: {said}" if said else "interrupted", file=sys.stderr)
        return 130


def _terminated(signum: int, frame: Any) -> None:  # noqa: ARG001 - a signal handler's signature
    raise KeyboardInterrupt("terminated (SIGTERM)")


def run(before_exit: Callable[[], None] | None = None) -> None:
    """The ``analytics-kit`` command: ``main``, then an exit without the interpreter's teardown.

    Freeing dlt's, pyarrow's and DuckDB's modules one by one took 0.4 s after the work was
    done (a sixth of a 1,000-row incremental run from the shell). By then every command has
    closed what it wrote (the load its file and lock, the demo its server); output and logs
    are flushed here first. ``main`` itself returns, for callers in Python. ``before_exit`` runs
    once the command is over and its output flushed (the entry point saves its regex cache there).
    """
    # a SIGTERM (timeout, docker stop, systemd) ends the command as Ctrl-C does: the load's interrupt handling, its
    # message and exit 130; it ended at -15 without a word (helper-124)
    signal.signal(signal.SIGTERM, _terminated)
    guard_streams()
    try:
        code = main(lean=True)
        logging.shutdown()
        flush_streams()
    except BrokenPipeError:
        code = 141  # the reader went away (`| head`): quiet, as a shell tool killed by SIGPIPE
    except OutputFailed as error:  # a last flush of what the command printed
        print(f"error: {error}", file=sys.stderr)
        code = 1
    if before_exit is not None:
        before_exit()
    os._exit(code)


if __name__ == "__main__":
    run()
