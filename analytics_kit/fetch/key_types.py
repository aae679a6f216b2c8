"""Primary-key values of another type, on records that stay dicts: a key dlt would lose stops the load.

dlt types an undeclared column by its first value and coerces later values into that type where it
can; one it cannot coerce (``"2.0"`` or ``True`` after numbers, ``"abc"`` after ISO timestamps) goes
into a variant column (``id__v_text``) and leaves the column empty. A key column cannot be empty, so
the load failed in dlt's normalize step with Arrow's "Column 'id' is declared non-nullable but contains
nulls", naming neither record nor value. This step, behind dlt's incremental step as the declared
types' is, names both. Arrow pages pass: the converter sends a page holding such a value here as dicts.
Declared key columns are ``DeclaredTypes``'s.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from analytics_kit.fetch.coercion import COERCE_ERRORS, BadValue, coerced_value, kind_of, shown
from analytics_kit.fetch.declared import FieldColumns, each_field, stored_type
from analytics_kit.fetch.page_checks import PageRequests, bad_value, odd_number

# Python types a column of each dlt type takes as they are (a bool is no int here)
_AS_THEY_ARE: dict[str, tuple[type, ...]] = {"bigint": (int,), "double": (float,), "bool": (bool,), "text": (str,)}


class KeyTypes:
    """The step: checks the undeclared key columns of dict records against the type their column has."""

    def __init__(self, resource: str, primary_key: Any, field_naming: Callable[[str], str], declared: Iterable[str],
                 requests: PageRequests, table: str | None, learned: Callable[[str], str | None]) -> None:
        keys = [primary_key] if isinstance(primary_key, str) else list(primary_key or ())
        self.resource, self.primary_key, self.field_naming = resource, primary_key, field_naming
        self.keys = frozenset(field_naming(k) for k in keys) - {field_naming(d) for d in declared}
        self.requests, self.table, self.learned = requests, table, learned
        self.kinds: dict[str, str] = {}  # a key column -> its type: the table's, the converter's, or its first value's
        self.stored: set[str] = set()  # the key columns whose type is the table's
        self.compound = len(keys) > 1
        self.columns = FieldColumns(field_naming, self.keys)  # a record's field -> the key column it fills, or None
        self.settled = table is None

    @classmethod
    def of(cls, resource: str, primary_key: Any, field_naming: Callable[[str], str], columns: Any,
           requests: PageRequests, table: str | None, learned: Callable[[str], str | None]) -> "KeyTypes | None":
        declared = [n for n, c in columns.items() if isinstance(c, dict) and c.get("data_type")] \
            if isinstance(columns, dict) else []
        step = cls(resource, primary_key, field_naming, declared, requests, table, learned)
        return step if step.keys else None

    def _settle(self) -> None:
        """The key columns' types as the table already holds them: dlt keeps them whatever this run's values say."""
        self.settled = True
        for name in self.keys:
            kind = stored_type(self.table, name)
            if kind in _AS_THEY_ARE or kind == "timestamp":
                self.kinds[name] = kind
                self.stored.add(name)

    def __call__(self, item: Any) -> Any:
        return each_field(self, item)

    def field(self, rows: list, index: int, row: dict, field: Any, value: Any) -> None:
        column = self.columns(field)
        if column is not None and value is not None:
            self._check(column, field, value, rows, index)

    def _check(self, column: str, field: Any, value: Any, rows: list, index: int) -> None:
        kind = self.kinds.get(column) or self.learned(column)
        if kind is None:
            kind = kind_of(value)
            if kind is None:
                return  # an object or a list: the pager refused it as a key already
            self.kinds[column] = kind
        # dlt coerces 2 into a bool column (true) and true into a number one (1): one key where the API sent two, which
        # the tally counted as two, so no dedup ran and a merge table held a key twice (helper-130, helper-132)
        merged = kind == "bool" and type(value) is not bool or type(value) is bool and kind in ("bigint", "double")
        # "1_0" after 10 in one child's listing and another's, where the pager's page held text keys only (helper-139)
        merged = merged or type(value) is str and kind in ("bigint", "double") and odd_number(value, kind)
        if not merged and type(value) in _AS_THEY_ARE.get(kind, ()):
            return
        try:
            stored_as = coerced_value(value, kind)
            if not merged:
                return
        except COERCE_ERRORS:
            merged = False
        sent = "" if field == column else f" in its field {field!r}"
        stored = column in self.stored
        raise bad_value(BadValue(
            column, index, kind, f"has {shown(value)}{sent}",
            f"Declare the key's type in the resource's columns, so that every value is converted to it: "
            f"\"columns\": {{\"{column}\": {{\"data_type\": \"text\"}}}} keeps numbers and text alike"
            + (f", and run a full refresh once (mode=\"full_refresh\", or --full-refresh): the table holds the key as "
               f"{kind}, and only a full refresh rebuilds it with the declared type (an incremental load is refused)."
               if stored else ".")
            + " If the API sends such keys only by mistake, this is a problem of its data.",
            because=f"{'part of ' if self.compound else ''}its primary key, which "
            + (f"the table holds as {kind}" if stored else f"the values before it made of type {kind}")
            + (f": dlt would store it as {shown(stored_as)}, and a key stored as another kind of value can become one "
               "with a key that is distinct from it (2 and 3 both true, true and 1 both 1)" if merged
               else ": dlt would put this one in a variant column and leave the key empty")),
            rows, self.requests.of(rows, index), self.resource, self.primary_key) from None
