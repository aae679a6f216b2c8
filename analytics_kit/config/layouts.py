"""The incremental's values in requests, in the layout the config wrote them in (``cursors.AsWritten``).

The kit keeps timestamp cursors in one canonical form (``...+00:00``) so that text order is time order;
an API reads its start parameter in the form its documentation shows (``...Z``). rest_api passes every
incremental value it puts in a request through the incremental's ``convert``: the kit gives each
incremental block without one of its own a converter back to the written layout.
"""

from __future__ import annotations

from typing import Any

from analytics_kit.fetch.cursors import AsWritten, canonical


def add_as_written(cfg: dict[str, Any]) -> None:
    """Sets ``convert`` on every incremental block of ``cfg`` (endpoint ``incremental``, a param of type
    ``incremental``, in resources and resource_defaults) that has no convert or transform, takes the newest
    value (``last_value_func`` max) and has a value written as text. An incremental given as dlt's own
    ``Incremental`` object cannot take one: its values go out in the kit's canonical form."""
    defaults = cfg.get("resource_defaults") or {}
    endpoints = [defaults.get("endpoint")] + [r.get("endpoint") for r in cfg.get("resources") or []
                                              if isinstance(r, dict)]
    for endpoint in endpoints:
        if not isinstance(endpoint, dict):
            continue
        params = endpoint.get("params") if isinstance(endpoint.get("params"), dict) else {}
        blocks = [endpoint.get("incremental"), *(v for v in params.values()
                                                 if isinstance(v, dict) and v.get("type") == "incremental")]
        for block in blocks:
            # a convert of the config's own (None is none, as dlt reads it); a cursor whose last_value_func is
            # not max has its start as an upper bound, which a cut would narrow (helper-57): dlt's form for it
            if (not isinstance(block, dict) or block.get("convert") is not None or block.get("transform") is not None
                    or block.get("last_value_func") not in (None, "max", max)):
                continue
            initial, end = block.get("initial_value"), block.get("end_value")
            written = {canonical(value): value for value in (initial, end) if isinstance(value, str)}
            if written:
                block["convert"] = AsWritten(initial if isinstance(initial, str) else None, written)
