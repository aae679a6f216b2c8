"""Distinct primary keys of one pass over a listing: whether its rows need dlt's dedup."""

from __future__ import annotations

import hashlib
import threading
from array import array
from bisect import bisect_right
from typing import Any, Callable

from analytics_kit.fetch.declared import stored_type
from analytics_kit.fetch.key_fields import key_fields
from analytics_kit.fetch.replace import declared_columns

SMALL = 100_000  # keys counted in a set (~5 MB at most); more are sorted in numpy, 8 bytes a key


# Records on a page, at least, for a page answered again at another offset to tell: a record or two sent twice may
# be what the listing holds.
COPY_RECORDS = 4


def _digest(keys: list) -> int:
    """The page's keys in any order: sorted where they sort (a frozenset's hash made pages of 4 consecutive ids
    collide: helper-113)."""
    try:
        return hash(tuple(sorted(keys)))
    except TypeError:  # keys of kinds that do not sort together
        return hash(frozenset(keys))


class Tally:
    """Distinct primary keys seen in one pass, and the total the pass's pages confirmed.

    Integer keys go into a compact array (8 bytes a record) counted once at the end.
    """

    def __init__(self, key: Any, naming: Callable[[str], str] = str) -> None:
        self.key = key if isinstance(key, str) else tuple(key) if key else None
        self.naming = naming
        self.fields: Any = None  # the key as the records name it, worked out from the first record
        self.ints = array("q")
        self.others: set = set()
        self.total: int | None = None
        self.shrank: tuple[int, int] | None = None  # the total fell during the pass (see purges.Totals.fell)
        self.short_of: tuple[int, int, str] | None = None  # the pages ended short of the total (see realigned.py)
        self.by_offset = False  # paged by the kit's offset pass (realigned.py pages such a listing again)
        self.newest: Any = None  # the listing's newest cursor, read before the pass's pages (see newest.py)
        self.rows = 0  # keys seen, repeats included
        self.pages = 0  # pages that held records: one alone cannot have shifted
        self.within = 0  # keys a page held more than once: no sign of a shift, which moves records between pages
        self.keyless = 0  # records without a key, which a filter step drops, left out of the count
        self.order: list = []  # keys that are no 64-bit integers, in the order seen (ints keeps the others')
        # where each page began: its first row, and its first cursor (see vouched.py); None when not in order
        self.starts: list[int] | None = []
        self.firsts: list = []
        self.totals: set[int] = set()  # every total the pass's pages gave
        self.newer: set = set()  # keys of records with a cursor past a given one (see note_newer)
        self.copies: list[tuple[str, str]] = []  # (earlier, later) requests the API answered with the same page
        self.echoes: list[tuple[str, str]] = []  # (earlier, later) requests whose pages held the same keys
        self._served: dict[int, str] = {}  # a digest of each page's first and last record, length and keys: its request
        self._keyed: dict[int, str] = {}  # each page's keys: its request
        self._lock = threading.Lock()
        self._distinct: int | None = None

    def keys_of(self, rows: list) -> Any:
        """What identifies a page's records: their keys, or the records themselves without a key."""
        if self.key is None:
            return rows
        records = [r for r in rows if isinstance(r, dict)]
        if self.fields is None:
            if not records:
                return []
            self.fields = key_fields(self.key, records[0], self.naming)
        fields = self.fields
        if isinstance(fields, str):  # the common case, inline: this runs for every record
            keys = [r.get(fields) for r in records]
            complete = None not in keys
        else:
            keys = [tuple(r.get(k) for k in fields) for r in records]
            complete = not any(None in k for k in keys)
        if complete:
            return keys
        # a record may name the key otherwise: an API that renamed the field (userId, later
        # user_id) loads both into one column, so each such record is looked up by its own fields
        return [_key(r, key_fields(self.key, r, self.naming)) for r in records]

    def see(self, rows: list) -> Any:
        """Counts a page's keys; returns them, as ``keys_of`` gives them."""
        keys = values = self.keys_of(rows)
        if self.key is None:
            return keys
        with self._lock:
            self.rows += len(values)
            self.pages += bool(values)
            self.within += len(values) - len(set(values))
            self._distinct = None
            try:
                if bool in set(map(type, values)):  # array("q") takes True as 1: a key the table may hold otherwise
                    raise TypeError
                self.ints.extend(values)  # all 64-bit integers: the common case, done in C
                values = []
            except (TypeError, OverflowError):
                pass  # extend stops at the first other value; all go one by one below
                # (the ones it took twice are harmless: only distinct values are counted)
            for value in values:
                if type(value) is int and -(2**63) <= value < 2**63:
                    self.ints.append(value)
                else:  # true apart from 1.0, as a text key holds them ('True', '1.0'; a set made them one: helper-136)
                    self.others.add(Flag(value) if type(value) is bool else value)
                    self.order.append(value)
        return keys

    def mark(self, first: Any) -> None:
        """Notes that a page begins here, its first cursor ``first``; None stops the notes (a pass out of order)."""
        if first is None:
            self.starts = None
        elif self.starts is not None:
            self.starts.append(self.rows)
            self.firsts.append(first)

    def note_newer(self, rows: list, keys: list, field: str, after: Any) -> None:
        """Notes the keys of ``rows`` (``keys``, as ``see`` gave them) whose ``field`` is ``after`` or past it:
        records updated or added since that cursor was read (in its second or day too: helper-65)."""
        try:
            self.newer.update(key for row, key in zip((r for r in rows if isinstance(r, dict)), keys, strict=True)
                              if row.get(field) is not None and row[field] >= after)
        except (TypeError, ValueError):  # values that do not compare, or keys not one per record
            self.starts = None  # the pass cannot be placed: no lookups

    def first_cursor(self, index: int) -> Any:
        """The first cursor of the page that held the ``index``-th key seen, or None."""
        page = bisect_right(self.starts, index) - 1 if self.starts else -1
        return self.firsts[page] if page >= 0 else None

    def sequence(self) -> Any:
        """The keys in the order seen (an ``array`` of integers or a list), or None where they are of
        mixed kinds (each kind is kept apart) or the pages' starts were not noted."""
        if self.key is None or self.starts is None or (self.ints and self.order):
            return None
        return self.order if self.order else self.ints

    def one_kind(self, kind: str | None) -> bool:
        """Whether keys distinct here stay distinct in the table, whose key column is of ``kind`` (see
        ``key_column_kind``; None: typed by the first key): every key a 64-bit integer, into a bigint or text column
        (or a double one, within 2**53), or every key a string into a text column.

        Only then does "distinct here" mean "distinct in the table": 2 and 2.0, or 5 and "5",
        are two keys here and one after conversion, and telling dlt the rows need no dedup
        left both in the table.
        """
        if not self.others:
            if kind in (None, "bigint", "text"):
                return True
            return kind == "double" and (not self.ints or -(2**53) <= min(self.ints) and max(self.ints) <= 2**53)
        return kind == "text" and not self.ints and all(type(k) is str for k in self.others)

    def distinct_as(self, kind: str | None) -> int:
        """Distinct keys as a key column of ``kind`` holds them: "5" and "05" are one bigint, two ISO forms one
        timestamp, 5 and "05" two texts (the report counted 2 rows of a table of 1, and 1 of 2: helper-134). Where
        the first value types the column (``kind`` None), or past ``SMALL`` keys: integers type it, and 2 and "2" (or
        2.0, "02") are one row once dlt coerces them (the report counted two: helper-123)."""
        if (kind is not None and isinstance(self.key, str) and not self.one_kind(kind)
                and len(self.ints) + len(self.others) <= SMALL):
            from analytics_kit.fetch.coercion import COERCE_ERRORS, coerced_value

            held = set()
            for value in (*self.ints, *self.others):
                try:
                    held.add(coerced_value(bool(value) if type(value) is Flag else value, kind))
                except COERCE_ERRORS:
                    held.add(value)  # a variant column's, which dlt keeps apart (a key is refused before: key_types)
            return len(held)
        if self.ints and self.others:
            ints, others = _as_integers(self.ints, self.others)
            return _count_distinct(ints) + len(others)
        if self.key is not None and not isinstance(self.key, str) and self.others:
            return _compound_held(self.others)
        return self.distinct()

    def unproven(self, missing: bool) -> str:
        """Why this pass does not prove each key came once (see ``one_kind``)."""
        if self.distinct() < self.rows:
            return "the listing returned a key more than once"
        if missing:
            return "the listing held fewer distinct keys than the API's total"
        return ("its keys are not all integers, nor strings the table keeps as text (a column dlt types), so keys "
                "distinct in the pages may not be in the table")

    def absorb(self, other: "Tally") -> None:
        """Adds ``other``'s keys: a tally of several passes counts each key once."""
        with self._lock:
            self.ints.extend(other.ints)
            self.others |= other.others
            self.rows += other.rows
            self._distinct = None

    def distinct(self) -> int:
        """Distinct keys as the API wrote them (2 and "2" are two): what a listing that shifts repeats. As the table
        holds them, and as a total is weighed (``missing``): ``distinct_as``."""
        if self._distinct is None:
            self._distinct = _count_distinct(self.ints) + len(self.others)
        return self._distinct

    def served(self, ends: tuple, keys: list, request: str) -> None:
        """Notes a page (``ends``: its length and its first and last record as the API sent them) answered again at
        another offset: the same page (``copies``), or its keys with other records (``echoes``). Pages of a few
        records are left out: the same record twice may be what the listing holds (helper-112: limit 1)."""
        if not ends or ends[0] < COPY_RECORDS or self.key is None:
            return
        mark = _digest(keys)  # in any order: a page served again reversed (helper-112)
        # digests, not the records: holding each page's first and last record took 55 MB at 1,000,000 rows
        earlier = self._served.setdefault(hash((ends, mark)), request)
        if earlier != request:
            self.copies.append((earlier, request))
        elif (earlier := self._keyed.setdefault(mark, request)) != request:
            self.echoes.append((earlier, request))

    def signature(self) -> str:
        """A digest of the keys in the order the pass saw them: two passes over a quiet listing
        agree, whatever its repeats; a listing that shifted between them does not."""
        digest = hashlib.blake2b(self.ints.tobytes(), digest_size=16)
        digest.update(repr(sorted(map(repr, self.others))).encode())
        digest.update(str(self.rows).encode())
        return digest.hexdigest()

    def missing(self, kind: str | None = None, shifts: bool = False) -> int:
        """Records the API's total counts that the table will not hold, its keys counted as a key column of ``kind``
        holds them: counted as written, a key repeated in another form (20 and "20") made up for a record the pass
        never saw, and a listing short of one loaded as whole. Without a total, where ``shifts``: the keys seen more
        than once, the one sign of a listing that shifted (a record updated while paged moved to its end, and the
        record after it slid into a page already read, lost without a word: helper-138)."""
        if self.key is None or (self.total is None and not (shifts and self.pages > 1)):
            return 0  # a listing of one page (a child's per parent) repeats keys as it holds them (helper-139)
        gap = (self.rows - self.within if self.total is None else self.total) - self.distinct_as(kind)
        # a total that counts the records a filter drops for having no key (a row of totals): short by those exactly
        return 0 if self.total is not None and 0 < self.keyless == gap else max(0, gap)


class Flag(int):
    """A key of true or false, counted apart from the numbers Python's set takes it for."""

    def __eq__(self, other: object) -> bool:
        return type(other) is Flag and int(self) == int(other)

    def __hash__(self) -> int:
        return hash((Flag, int(self)))

    def __repr__(self) -> str:
        return repr(bool(self))


def _key(record: dict, fields: Any) -> Any:
    """The record's key under ``fields``: one value, or a tuple of them."""
    return record.get(fields) if isinstance(fields, str) else tuple(record.get(k) for k in fields)


def joined(passes: list[Tally], key: Any, naming: Callable[[str], str]) -> Tally:
    """One tally of every pass so far: each key once."""
    if len(passes) == 1:
        return passes[0]
    union = Tally(key, naming)
    for tally in passes:
        union.absorb(tally)
    return union


def _as_integers(ints: array, others: set) -> tuple[array, set]:
    """Keys of mixed kinds as the table will hold them, where integers set the column's type: 2 and "2" (or 2.0,
    "02") are one row once dlt coerces them, and the report counted two (helper-123)."""
    from analytics_kit.seam import coerce_value, py_type_to_sc_type

    joined, left = array("q", ints), set()
    for value in others:
        try:
            number = coerce_value("bigint", py_type_to_sc_type(type(value)), value)
            joined.append(number)
        except (ValueError, TypeError, OverflowError, AttributeError):
            left.add(value)
    return joined, left


def _compound_held(keys: set) -> int:
    """Distinct keys of several fields as the table holds them, where a field holds integers: (15, "x") and ("15",
    "x") are one row once dlt coerces the text, and counted as two they made up for a record never served
    (helper-139). The parts' types are looked at first, in C: keys of one type a field cost nothing more."""
    mixed = [i for i, parts in enumerate(zip(*keys)) if int in (kinds := set(map(type, parts))) and len(kinds) > 1]
    if not mixed:
        return len(keys)
    from analytics_kit.fetch.coercion import COERCE_ERRORS, coerced_value

    def held(part: Any) -> Any:
        try:
            return part if type(part) is int else coerced_value(part, "bigint")
        except COERCE_ERRORS:
            return part

    return len({tuple(held(part) if i in mixed else part for i, part in enumerate(key)) for key in keys})


def _count_distinct(ints: array) -> int:
    """Distinct values of ``ints``, in a sorted copy: 8 bytes a value.

    Arrow's count_distinct took 120 MB for 1,000,000 keys (its hash table), and
    pa.array() on the array.array another 50 MB; this is the end-of-extraction peak. A few
    keys (an incremental run's) are counted in a set, without importing numpy (~0.1 s).
    """
    if len(ints) <= SMALL:
        return len(set(ints))
    import numpy as np  # here, not above: the load command imports pyarrow without numpy (analytics_kit_command)

    values = np.frombuffer(ints, dtype=np.int64).copy()
    values.sort()
    return int(values.size and 1 + np.count_nonzero(values[1:] != values[:-1]))


def key_column_kind(key: Any, columns: Any, naming: Callable[[str], str],
                    learned: Callable[[str], str | None] = lambda name: None,
                    table: str | None = None) -> Callable[[], str | None]:
    """The type dlt stores the key in, asked at the end of a pass: dlt's schema's, else the declared type, else the one
    the kit's conversion gave it (``learned``); None where dlt's normaliser will type it by its first value. A key of
    several fields: None.

    Distinct keys stay distinct only in some: into a bigint column "5", "05" and " 5" are one key, a timestamp column
    makes "...Z" and "...+00:00" one (helper-49), a bool column makes 2 and 3 true, a double one 2**53 and 2**53 + 1
    one (helper-133). A declared type is the table's: an incremental run declaring a key as another type than its
    table holds is refused before its pages (``stored_types.refuse_retyped_columns``).
    """
    if not isinstance(key, str):
        return lambda: None
    column = naming(key)
    declared = declared_columns(columns, naming).get(column, {}).get("data_type")

    def kind() -> str | None:
        return stored_type(table, column) or declared or learned(key)

    return kind
