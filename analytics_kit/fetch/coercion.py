"""What dlt's normaliser does with a value in a column of a given type, and the error for one a declared
column cannot hold: the one rule the Arrow pages, the checks of records that stay dicts and the replace's
soft-delete flags share."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from operator import methodcaller
from typing import Any

from analytics_kit.seam import coerce_value, is_iso_timestamp, py_type_to_sc_type

# What dlt's coercion raises where its normaliser makes a variant column (OSError: pendulum's years past 9999).
COERCE_ERRORS = (ValueError, SyntaxError, TypeError, OverflowError, OSError)
# Integers a bigint column holds
INT64 = range(-2**63, 2**63)


class BadValue(Exception):
    """A value a declared column cannot hold; ``index`` is the record's place in the group."""

    def __init__(self, column: str, index: int, declared: str, problem: str, guidance: str, *,
                 because: str | None = None) -> None:
        super().__init__(f"{column}: {problem}")
        self.column, self.index, self.declared, self.problem, self.guidance = column, index, declared, problem, guidance
        self.because = because or f"which the config declares {declared}"  # what the column is, after its name


def coerced_value(value: Any, kind: str) -> Any:
    """``value`` as dlt's normaliser stores it in a column of ``kind``, read and coerced as its
    ``items_normalizers/jsonl.py`` does; raises one of ``COERCE_ERRORS`` where it makes a variant instead."""
    return coerce_value(kind, py_type_to_sc_type(type(value)), value)


def json_value(value: Any) -> Any:
    """``value`` as a json column holds it: text parsed as dlt's coercion parses it. Raises one of ``COERCE_ERRORS``
    for anything dlt would put in a variant column, and for text of a JSON string (``'"x"'``), which dlt's loader
    stores as the string's content: ``"123"`` became the number 123, ``"x"`` failed as malformed JSON."""
    if value is None or type(value) in (dict, list):
        return value
    parsed = coerced_value(value, "json")
    if isinstance(parsed, str):
        raise ValueError(f"{value!r} is JSON text of a string")
    return parsed


def refused(name: str, index: int, kind: str, value: Any, field: Any = None, key: bool = False) -> BadValue:
    """The error for ``value``, which column ``name``, declared of ``kind``, cannot hold (the API's ``field``);
    ``key``: the column holds the primary key, which a variant column would leave empty."""
    sent = "" if field is None or field == name else f" in its field {field!r}"
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        return BadValue(name, index, f"of type {kind}", f"has {value}{sent}, beyond 64-bit integers,",
                        f"Declare {name!r} as text (data_type 'text') to keep such numbers whole.")
    if kind == "json" and isinstance(value, str) and value.strip().startswith('"'):
        return BadValue(name, index, "of type json", f"has {shown(value)}{sent}, JSON text of a string, which dlt "
                        "stores as the string's content (\"123\" as a number, \"x\" as malformed JSON),",
                        f"Declare {name!r} as text (data_type 'text') to keep such values as they are.")
    return BadValue(name, index, f"of type {kind}", f"has {shown(value)}{sent}",
                    "Fix the column's data_type in the config if the API sends such values" + (
                        ": a primary key cannot go to a variant column, and data_type 'text' holds numbers and text "
                        "alike. If the API sends such keys only by mistake, this is a problem of its data." if key else
                        f", or leave {name!r} undeclared to let dlt keep them in a variant column."))


def shown(value: Any, limit: int = 80) -> str:
    """``value`` as a message quotes it (a Decimal as its digits, anything else as ``repr``), cut to ``limit``
    characters: the API may send a value of any length."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def kind_of(value: Any) -> str | None:
    """The dlt data type dlt's normaliser gives ``value``; None for nested values."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "timestamp" if is_iso_timestamp(str, value) else "text"
    if isinstance(value, (datetime, date)):
        return "timestamp"
    return None


def bools_mixed(rows: list[dict], name: str, kind: str) -> bool:
    """Whether a bool column holds another value, or another column a bool."""
    types = set(map(type, map(methodcaller("get", name), rows)))
    return bool(types - {bool, type(None)}) if kind == "bool" else bool in types
