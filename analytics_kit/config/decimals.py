"""Declared decimal columns must be ones the database can make: checked before any request.

dlt passes a decimal's precision and scale on as they are. ``scale: -1`` failed in the first record's
conversion with Arrow's "Scale must be a non-negative integer", ``precision: 40`` in the load step,
after every page was fetched, with DuckDB's "DECIMAL type width must be between 1 and 38", and a
scale above the precision blamed each value for having too many digits.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping

from analytics_kit.config.checks import fail, got

# dlt's precision and scale for a decimal column that gives none (arithmetics.DEFAULT_NUMERIC_PRECISION and
# _SCALE, the DuckDB and PostgreSQL destinations' decimal_precision)
DEFAULT_PRECISION, DEFAULT_SCALE = 38, 9
# The widest decimal each destination makes: DuckDB's DECIMAL (and Arrow's decimal128, which its files
# are written in) 38 digits, PostgreSQL's numeric 1000; others are left to dlt
WIDEST = {"duckdb": 38, "motherduck": 38, "postgres": 1000}
# The (precision, scale) dlt gives a wei column on each destination: its capabilities' wei_precision (a test
# holds these to dlt's); others are left to dlt
WEI = {"duckdb": (38, 0), "motherduck": (38, 0), "postgres": (156, 78)}


def decimal_shape(hint: dict) -> tuple[int, int]:
    """A declared decimal's (precision, scale), dlt's defaults filling what the hint leaves out."""
    precision, scale = hint.get("precision"), hint.get("scale")
    return (DEFAULT_PRECISION if precision is None else precision, DEFAULT_SCALE if scale is None else scale)


def exact_shape(column: dict, wei: tuple[int, int] | None) -> tuple[int, int] | None:
    """A decimal or wei column's (precision, scale), dlt's defaults filling what it leaves out (a wei's: ``wei``, the
    destination's shape); None for another type, or for a wei where the destination's shape is unknown."""
    if column.get("data_type") == "decimal":
        return decimal_shape(column)
    if column.get("data_type") == "wei" and wei is not None:
        precision, scale = column.get("precision"), column.get("scale")
        return (wei[0] if precision is None else precision, wei[1] if scale is None else scale)
    return None


def _named(destination: Any) -> str | None:
    """The destination's name (None not given: the DuckDB file); None for one given otherwise, refused where the
    destination is checked."""
    return (destination or "duckdb").strip().lower() if isinstance(destination, (str, type(None))) else None


def wei_shape(destination: Any) -> tuple[int, int] | None:
    """A wei column's (precision, scale) on ``destination``; None where unknown."""
    return WEI.get(_named(destination))  # type: ignore[arg-type]


def _check_decimal(path: Callable[[str], str], hint: dict, destination: Any, filled: Mapping[str, int]) -> None:
    """Raise ConfigError for a decimal ``hint`` that ``destination`` cannot make; ``path(key)``: where it gives it;
    ``filled``: what a wei's shape there gave it."""
    widest = WIDEST.get(_named(destination))  # type: ignore[arg-type]
    for key in ("precision", "scale"):
        value = hint.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise fail(path(key), f"got {got(value)}", "a whole number",
                       f"Write the decimal's {key} as a number, e.g. {{'data_type': 'decimal', 'precision': 10, "
                       "'scale': 2}.")
    precision, scale = decimal_shape(hint)
    if precision < 1 or (widest is not None and precision > widest):
        where = f" for {destination or 'the DuckDB file'}" if widest is not None else ""
        raise fail(path("precision"), f"got {precision}",
                   f"a precision from 1 to {widest or 'the widest there is'}{where}",
                   "Give a precision of at least 1: the number of digits in all." if precision < 1 else
                   "Lower the precision (the number of digits in all), or declare the column as double or text "
                   "for wider numbers.")
    if not 0 <= scale <= precision:
        said = (f"no scale, for which dlt takes {scale} (a wei's there)," if "scale" in filled else f"got {scale}"
                if hint.get("scale") is not None else f"no scale, for which dlt takes {scale},")
        raise fail(path("scale"), f"{said} above the precision" if scale > 0 else said,
                   f"a scale from 0 to the precision ({precision})",
                   "The scale is the number of digits after the point, part of the precision: e.g. "
                   "{'data_type': 'decimal', 'precision': 10, 'scale': 2} holds 12345678.90.")


def shape_decimals(resources: Iterable[Any], destination: Any, config: dict[str, Any]) -> None:
    """Checks and shapes each decimal and wei column as dlt's rest_api built the resource (resource_defaults'
    merged in), on the resource's own copy of its columns; raises ConfigError for one ``destination`` cannot make.

    - A wei given its own precision or scale becomes the decimal of that shape. dlt's table takes the hint's
      shape (DECIMAL(10,2)), but its parquet writer, which writes the kit's files, gives every wei the
      destination's (38,0 in DuckDB): 2.555 failed there ("Rescaling Decimal value"), or was rounded to 3.00
      (helper-86). Where the destination's wei is unknown, dlt decides.
    - A decimal given its precision or its scale alone gets the other as dlt's table does: the parquet writer
      took a precision alone as scale 0 ("Rescaling Decimal value would cause data loss" for 0.125 in a column dlt
      makes DECIMAL(10,9)), and a scale alone as (38, 9).

    Judged here, not on the config: rest_api merges a resource's columns into resource_defaults' own column
    dicts, so a hint reaches every resource sharing them, in ways the kit modelled wrongly (helper-87 to 90);
    shaped on the merged dicts in place, one resource's shape reached another's text or bigint column. A refusal
    names where ``config`` gives the value."""
    wei = wei_shape(destination)
    for resource in resources:
        columns = resource.columns
        shaped = {}
        for name, hint in columns.items() if isinstance(columns, dict) else ():
            if not isinstance(hint, dict) or hint.get("data_type") not in ("decimal", "wei"):
                continue
            new = dict(hint)
            filled: dict[str, int] = {}  # what the destination's wei shape gives a wei that leaves it out
            if wei is not None and new["data_type"] == "wei" and (
                    new.get("precision") is not None or new.get("scale") is not None):
                filled = {key: default for key, default in zip(("precision", "scale"), wei) if new.get(key) is None}
                new.update(data_type="decimal", **filled)
            if new["data_type"] == "decimal":
                _check_decimal(functools.partial(_written_at, config, resource.name, name), new, destination, filled)
                if (new.get("precision") is None) != (new.get("scale") is None):
                    new["precision"], new["scale"] = decimal_shape(new)
            if new != hint:
                shaped[name] = new
        if shaped:
            # dlt's public route to change a built resource's columns: it clones the resource's hints first, so
            # the dicts it shares with other resources stay as they are
            resource.apply_hints(columns=shaped)


def _written_at(config: dict[str, Any], resource: str, column: str, key: str) -> str:
    """Where ``config`` gives ``column``'s ``key`` for ``resource``: its own columns (dict or dlt's list, where the
    last of a name wins), else resource_defaults'; the resource's columns where neither does (a default dlt fills)."""
    places = [(f"resources[{i}]", r) for i, r in enumerate(config.get("resources") or [])
              if isinstance(r, dict) and r.get("name") == resource]
    defaults = config.get("resource_defaults")
    places += [("resource_defaults", defaults)] if isinstance(defaults, dict) else []
    for wanted in (key, None):  # where the key is given; else where the column is declared at all
        for path, place in places:
            columns = place.get("columns")
            if isinstance(columns, dict) and isinstance(columns.get(column), dict) and (
                    wanted is None or wanted in columns[column]):
                return f"{path}.columns.{column}.{key}"
            listed = enumerate(columns) if isinstance(columns, list) else ()
            for at, hint in reversed(list(listed)):
                if isinstance(hint, dict) and hint.get("name") == column and (wanted is None or wanted in hint):
                    return f"{path}.columns[{at}].{key}"
    return f"{places[0][0] if places else 'resources'}.columns.{column}.{key}"
