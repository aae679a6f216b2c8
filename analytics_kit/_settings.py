"""Settings the kit applies to dlt before dlt reads its configuration.

Environment variables are dlt's highest-priority config provider. The telemetry switch is set
at import and yields only to the environment: the kit never lets dlt call an outside host
unless the user says so there. The tuning defaults yield to any value the user gave dlt, in the
environment or in its config files, and are applied when a load starts (``apply_tuning``).
"""

import os

TELEMETRY = {
    # dlt sends anonymous telemetry to an outside host unless this is off.
    "RUNTIME__DLTHUB_TELEMETRY": "false",
}

# environment variable: (the kit's value, dlt's config keys where a user may set it)
TUNING = {
    # Files of at most this many rows: dlt's normaliser reads a parquet file whole, so
    # one file per load made memory grow with the load (1,000,000 rows: +150 MB).
    # Set per step (the extract step's writer reads the sources section), so that a size the user
    # gives one step leaves the other's bounded.
    "SOURCES__DATA_WRITER__FILE_MAX_ITEMS": ("100000", ("data_writer.file_max_items",
                                                        "sources.data_writer.file_max_items")),
    "NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS": ("100000", ("data_writer.file_max_items",
                                                          "normalize.data_writer.file_max_items")),
    # dlt's extract sleeps this long each time a resource runs out (10 ms by default; the kit's
    # resources are plain generators, no futures): ~30 ms of a 1,000-row incremental run.
    "EXTRACT__FUTURES_POLL_INTERVAL": ("0.001", ("extract.futures_poll_interval",)),
}

_applied: dict[str, str] = {}  # what apply_tuning put into the environment


def apply() -> None:
    for name, value in TELEMETRY.items():
        os.environ.setdefault(name, value)


def apply_tuning() -> None:
    """Each tuning default, unless the user set it for dlt (an environment variable, or a
    config.toml dlt reads); looked at again on every load, as the user may change either."""
    import dlt

    for name, (value, keys) in TUNING.items():
        if name in os.environ and _applied.get(name) != os.environ[name]:
            continue  # the user's own
        os.environ.pop(name, None)
        _applied.pop(name, None)
        if all(dlt.config.get(key) is None for key in keys):
            os.environ[name] = _applied[name] = value
