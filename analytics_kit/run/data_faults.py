"""Load errors for values dlt's steps could not store, recognised by the words of the error that stopped them."""

from __future__ import annotations

import re

from analytics_kit.errors import LoadError


def data_fault(root: BaseException, text: str, where: str, resource: str | None) -> LoadError | None:
    """The ``LoadError`` for ``root`` (its redacted message ``text``), or None where it is no such fault."""
    # orjson says "exceeds 64-bit range"; numbers from 2**63 to 2**64-1 reach dlt's normaliser,
    # where Python says "int too large to convert to C long"
    if "exceeds 64-bit range" in text or (isinstance(root, OverflowError) and "too large to convert" in text):
        return LoadError(
            f"{where[0].upper() + where[1:]} got an integer beyond 64 bits, which dlt and DuckDB cannot store as a "
            f"number ({type(root).__name__}: {text}); nothing from this run was committed.",
            guidance="Declare the column that holds such numbers as text (\"data_type\": \"text\") in the "
            "resource's columns to keep them whole, or as double or decimal; a field dlt renames or flattens is "
            "declared by its column's name (user_id for userId, meta__count for meta.count). A primary key or a "
            "cursor must be one of the API's fields as it sends them: ask the API for such ids as strings.",
            resource=resource)
    if isinstance(root, TypeError) and "recursion limit reached" in text.lower():  # orjson's, writing dlt's files
        return LoadError(
            f"{where[0].upper() + where[1:]} sent a record holding data nested more than 254 levels deep, which "
            "orjson, the JSON writer of dlt's working files, refuses; nothing from this run was committed.",
            guidance="Declare the field that holds it as json in the resource's columns (\"columns\": {\"payload\": "
            "{\"data_type\": \"json\"}}, say): the kit keeps it whole as JSON text. Where the resource's records "
            "stay dicts (processing_steps, fields dlt renames), make it text in a step instead: \"processing_steps\": "
            "[{\"map\": lambda r: {**r, \"payload\": json.dumps(r[\"payload\"])}}]. If the API sends such data only "
            "by mistake, this is a problem of its data.", resource=resource)
    # dlt's normaliser puts a value it cannot coerce into its column's type in a variant column (id__v_text) and
    # leaves the column empty, which the parquet writer refuses for a NOT NULL one: a key, or one declared so
    emptied = re.search(r"Column '([^']*)' is declared non-nullable but contains nulls", text)
    if emptied is not None:
        column = emptied.group(1)
        return LoadError(
            f"The load stopped in dlt's normalize step: {where} sent a value in column {column!r} (a primary key, "
            "or a column declared NOT NULL) of another type than the column's, which dlt keeps in a variant column "
            f"({column}__v_text, say), leaving {column!r} empty; nothing from this run was committed.",
            guidance=f"Declare the column's type in the resource's columns, so that every value is converted to it: "
            f"\"columns\": {{\"{column}\": {{\"data_type\": \"text\"}}}} keeps numbers and text alike. If the API "
            "sends such values only by mistake, this is a problem of its data.", resource=resource, column=column)
    return None
