"""What SQL the readers run: reads of the file, and objects of the reader's own in memory; one query at a time."""

from __future__ import annotations

import re

import duckdb

from analytics_kit.errors import QueryError


# What a reader's SQL may run: reads, and objects of its own in memory (the file is attached read-only). Anything
# else is refused before it runs: a list of what to refuse was got around twice, by COPY inside PREPARE and by
# PRAGMA import_database running files written to the spill folder, both ending in the file overwritten
# (helper-119, helper-120)
_READS = {"SELECT", "EXPLAIN", "CREATE", "INSERT", "UPDATE", "DELETE", "MERGE_INTO", "DROP", "ALTER", "TRANSACTION",
          "VARIABLE_SET", "SET", "CREATE_FUNC", "MULTI", "ANALYZE", "VACUUM"}
_PRAGMAS = {"table_info", "show_tables", "show_tables_expanded", "show", "database_size", "storage_info", "version",
            "platform", "functions", "collations", "database_list", "metadata_info", "user_agent"}
_NAMED = {"COPY": "COPY", "EXPORT": "EXPORT DATABASE", "LOAD": "INSTALL and LOAD", "PREPARE": "PREPARE",
          "COPY_DATABASE": "COPY FROM DATABASE", "EXECUTE": "EXECUTE", "CALL": "CALL", "ATTACH": "ATTACH",
          "DETACH": "DETACH"}
# Functions that open files (the file itself again among them: a second handle's close drops the reader's lock,
# helper-121) or change logging (duckdb 1.4 aborted the process on one): refused by name wherever they are called
_OPENS = re.compile(r"(read_\w+|parquet_\w+|sniff_csv|glob|iceberg_\w+|delta_scan|\w+_scan|enable_logging|"
                    r"disable_logging|truncate_duckdb_logs|"
                    # SQL in a string, which no scan of the statement sees (helper-122)
                    r"query|query_table|json_execute_serialized_sql)", re.IGNORECASE)
_WORD = re.compile(r'"(?:[^"]|"")*"|\w+')
_FILE_NAME = re.compile(r"\.(duckdb|db|ddb|csv|tsv|parquet|json|jsonl|ndjson|txt|gz|zst|xlsx|arrow|avro|sqlite)$",
                        re.IGNORECASE)


def reads_only(con: duckdb.DuckDBPyConnection, sql: str, label: str) -> None:
    """Refuses SQL with a statement other than a read or an object of the reader's own in memory (``_READS``, and
    PRAGMAs that only tell: ``_PRAGMAS``), or one that calls a function opening files (``_OPENS``) or names a file
    in its FROM: the readers read the file and nothing else. Told apart on the reader's own connection (duckdb 1.4
    reads an IMPORT DATABASE's files as it parses it), word by word with DuckDB's own tokenizer (comments nest, and a
    regex missed a PRAGMA behind one: helper-121); SQL that does not parse is left to DuckDB's own message, and SQL
    DuckDB cannot take apart otherwise is refused."""
    try:
        statements = con.extract_statements(sql)
        kinds = [(statement.type.name, _words(statement.query)) for statement in statements]
    except duckdb.ParserException:
        return
    except Exception as error:  # noqa: BLE001 - a statement type this duckdb cannot name (UPDATE EXTENSIONS), a file
        raise QueryError(f"The readers read {label} and nothing else, and this SQL could not be told apart into "
                         f"statements that only read it ({_first_line(error)}).", guidance=_READ_ELSEWHERE,
                         database=label) from None
    refused = sorted({_refused(kind, words) for kind, words in kinds} - {None})
    if refused:
        named = ", ".join(refused[:-1]) + " and " + refused[-1] if len(refused) > 1 else refused[0]
        raise QueryError(f"The readers read {label} and nothing else: {named} {'are' if len(refused) > 1 else 'is'} "
                         "not run.", guidance=_READ_ELSEWHERE, database=label)
    queries = sum(_returns_rows(kind, words) for kind, words in kinds)
    if queries > 1:  # DuckDB returns the last one's rows: the others were dropped without a word (helper-149, -150)
        raise QueryError(f"This SQL holds {queries} queries; a reader returns one table.", database=label,
                         guidance="Run them one at a time, or make them one (UNION ALL, a join, or WITH).")


# statement types that return rows: a query, SHOW and DESCRIBE (SELECT), PRAGMA show_tables, EXPLAIN, PIVOT (MULTI)
_ROWS = frozenset({"SELECT", "PRAGMA", "EXPLAIN", "MULTI", "CALL"})
_CHANGES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE_INTO"})


def _returns_rows(kind: str, words: list[tuple[str, str]]) -> bool:
    """A statement that returns rows: a query, or a change with RETURNING, whose rows a query beside it dropped."""
    return kind in _ROWS or (kind in _CHANGES and ("keyword", "returning") in ((k, t.lower()) for k, t in words))


def _words(text: str) -> list[tuple[str, str]]:
    """(kind, text) of each token of a statement but comments, as DuckDB's tokenizer reads it; a word unquoted."""
    tokens = [(start, kind.name) for start, kind in duckdb.tokenize(text) if kind.name != "comment"]
    words = []
    for (start, kind), (end, _) in zip(tokens, tokens[1:] + [(len(text), "")]):
        piece = text[start:end].strip()
        if kind in ("identifier", "keyword"):
            found = _WORD.match(piece)
            piece = found.group(0).strip('"').replace('""', '"') if found else piece
        words.append((kind, piece))
    return words


def _refused(kind: str, words: list[tuple[str, str]]) -> str | None:
    """How a message names a statement the readers do not run; None for one they run."""
    texts = [text.lower() for _, text in words]
    if kind == "PRAGMA":  # duckdb 2 names IMPORT DATABASE and COPY FROM DATABASE a PRAGMA, and runs them as they come
        if texts[:1] == ["pragma"] and len(texts) > 1:
            return None if texts[1] in _PRAGMAS else f"PRAGMA {texts[1]}"
        return " ".join(t.upper() for t in texts[:2]) or "this PRAGMA"
    if kind not in _READS:
        if kind == "CALL" and texts[:1] != ["call"]:  # duckdb types CHECKPOINT and FORCE CHECKPOINT as a CALL
            return " ".join(t.upper() for t in texts[:2] if t.isalpha()) or "CALL"
        return _NAMED.get(kind, f"a statement of type {kind}")
    for (here, text), (after, following) in zip(words, words[1:] + [("", "")]):
        if here in ("identifier", "keyword") and following == "(" and _OPENS.fullmatch(text):  # GLOB is a keyword
            return f"{text.lower()}()"
        if here == "keyword" and text.lower() in ("from", "join") and after == "string_const":
            return f"a file named in {text.upper()} ({following})"
        if here == "identifier" and ("/" in text or _FILE_NAME.search(text)):  # duckdb 2 reads FROM "x.duckdb"
            return f"a file named as a table ({text!r})"
    return None


_READ_ELSEWHERE = ("Query the file's tables by name (events, or analytics.events), keep your own tables in memory "
                   "(CREATE TEMP TABLE), and pass values with params= rather than PREPARE. To copy, export or attach, "
                   "or to use extensions, open the file with duckdb yourself: duckdb.connect(path, read_only=True).")


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
