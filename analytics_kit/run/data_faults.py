"""Load errors for values dlt's steps could not store, recognised by the words of the error that stopped them."""

from __future__ import annotations

import errno
import re

from analytics_kit.errors import LoadError


_SQL_NAMES = {"INT8": "TINYINT", "INT16": "SMALLINT", "INT32": "INTEGER", "UINT8": "UTINYINT", "UINT16": "USMALLINT",
              "UINT32": "UINTEGER", "UINT64": "UBIGINT"}


def data_fault(root: BaseException, text: str, where: str, resource: str | None) -> LoadError | None:
    """The ``LoadError`` for ``root`` (its redacted message ``text``), or None where it is no such fault."""
    # orjson says "exceeds 64-bit range"; numbers from 2**63 to 2**64-1 reach dlt's normaliser,
    # where Python says "int too large to convert to C long"
    if "exceeds 64-bit range" in text or (isinstance(root, OverflowError) and "too large to convert" in text):
        return LoadError(
            f"{where[0].upper() + where[1:]} got a number too large for a 64-bit integer column (an integer beyond "
            "64 bits, or a value such as 1e308 in a column declared bigint or typed so by its first values), which "
            f"dlt and DuckDB cannot store as one ({type(root).__name__}: {text}); nothing from this run was committed.",
            guidance="Declare the column that holds such numbers as text (\"data_type\": \"text\") in the "
            "resource's columns to keep them whole, or as double or decimal (not bigint); a field dlt renames or "
            "flattens is declared by its column's name (user_id for userId, meta__count for meta.count). A primary key or a "
            "cursor must be one of the API's fields as it sends them: ask the API for such ids as strings.",
            resource=resource)
    if isinstance(root, TypeError) and "recursion limit reached" in text.lower():  # orjson's, writing dlt's files
        return LoadError(
            f"{where[0].upper() + where[1:]} sent a record holding data nested more than 254 levels deep, which "
            "orjson, the JSON writer of dlt's working files, refuses; nothing from this run was committed.",
            guidance="Declare the field that holds it as json in the resource's columns (\"columns\": {\"payload\": "
            "{\"data_type\": \"json\"}}, say, for a field named payload): the kit keeps it whole as JSON text. Where "
            "the resource's records stay dicts (processing_steps, fields dlt renames), make it text in a step and "
            "declare it text (a json column would parse it again): \"processing_steps\": [{\"map\": lambda r: {**r, "
            "\"payload\": json.dumps(r[\"payload\"])}}] with \"columns\": {\"payload\": {\"data_type\": \"text\"}}. "
            "If the API sends such data only by mistake, this is a problem of its data.", resource=resource)
    # dlt's normaliser puts a value it cannot coerce into its column's type in a variant column (id__v_text) and
    # leaves the column empty, which the parquet writer refuses for a NOT NULL one: a key, or one declared so; a record
    # without the field leaves it empty too, and one with null there stops dlt's normaliser itself
    emptied = re.search(r"Column '([^']*)' is declared non-nullable but contains nulls", text)
    nulled = re.search(r"Cannot coerce NULL in table `[^`]*` column `([^`]*)`", text)  # dlt's, for a null on dicts
    # dlt's, where no record of a first load filled it (helper-132)
    unbound = re.search(r"- (\S+) \(marked as non-nullable and must have values\)", str(root))
    column = (emptied or nulled or unbound).group(1) if emptied or nulled or unbound else None
    if column is not None:
        return LoadError(
            f"The load stopped in dlt's normalize step: {where} sent a record that leaves column {column!r} (a primary "
            "key, or a column declared NOT NULL) empty: without the field, with null there, or with a value of "
            f"another type than the column's, which dlt keeps in a variant column ({column}__v_text, say); nothing "
            "from this run was committed.",
            guidance=f"If the API may omit the field or send null, declare it nullable in the resource's columns "
            f"(not for a primary key). For values of two types, declare its type so that every value is converted to "
            f"it (\"columns\": {{\"{column}\": {{\"data_type\": \"text\"}}}} keeps numbers and text alike) and, "
            "where the table holds it already, run a full refresh once. If the API sends such records only by "
            "mistake, this is a problem of its data.", resource=resource, column=column)
    # a bigint declared with a precision is a smaller integer in the table (8 bits: TINYINT), and DuckDB refused a
    # larger value in the load step, with the advice to run the load again (helper-138)
    narrow = re.search(r"Type \S+ with value (\S+) can't be cast because the value is out of range for the "
                       r"destination type (\S+?)(?: when casting from source column (\S+))?$", text.strip())
    # where records stay dicts, dlt's parquet writer refuses it, naming no column (helper-139)
    narrow = narrow or re.search(r"Value (\S+) too large to fit in (C) integer type()", text)
    if narrow is not None:
        value, kind, column = narrow.groups()
        column = column or None
        # DuckDB names the C type: its INT8 is TINYINT (in SQL, INT8 is BIGINT)
        held = ("too large for the integer type a declared precision gives its column (dlt's error names none)"
                if kind == "C" else f"which the table holds as {_SQL_NAMES.get(kind, kind)}, too small a type for it")
        return LoadError(
            f"The load stopped: {where} sent {value} for {f'column {column!r}' if column else 'a column'}, {held}; "
            "nothing from this run was committed.",
            guidance="A bigint declared with a precision is stored in an integer of that many bits (8: TINYINT, "
            "-128 to 127; 16: SMALLINT; 32: INTEGER): declare the column without a precision, or with one that "
            "holds the API's values; where the table holds the column already, run a full refresh once (it keeps "
            "the type it has otherwise). Running the load again as it is fails the same way.", resource=resource,
            column=column)
    return None


def normalize_fault(root: BaseException, text: str, changed: dict[str, set[str]], resource: str | None) -> LoadError | None:
    """The ``LoadError`` for a value dlt's normaliser could not convert, or None for another fault. dlt keeps values
    of another type in variant columns, and fails on some runs of them (5, then an ISO date, then "NULL": "could not
    convert string to float"; an ISO date, then 2**63-1: "[Errno 75] Value too large"), naming no column (helper-142).
    ``changed``: the columns the kit saw change type, per resource."""
    if not ((isinstance(root, ValueError) and ("could not convert" in text or "invalid literal" in text))
            or (isinstance(root, OSError) and root.errno == errno.EOVERFLOW)):
        return None
    named = "; ".join(f"{', '.join(sorted(columns))} (resource {name})" for name, columns in sorted(changed.items())
                      if columns)
    return LoadError(
        f"dlt's normaliser could not convert a value ({type(root).__name__}: {text}): most often a field whose values "
        "change type from record to record (a number, then a date, then text), which dlt keeps in variant columns "
        f"until one defeats it.{f' Columns whose values changed type: {named}.' if named else ''} Nothing from this "
        "run was committed.",
        guidance="Declare such a column's data_type in the resource's columns (\"text\" takes any value as it is "
        "sent; a field dlt renames or flattens by its column's name, user_id for userId). Run as it is, the load "
        "fails the same way again.", resource=resource)