"""Settings the kit applies to dlt before dlt reads its configuration.

Environment variables are dlt's highest-priority config provider, and setdefault
keeps any value the user chose.
"""

import os

DLT_DEFAULTS = {
    # dlt sends anonymous telemetry to an outside host unless this is off.
    "RUNTIME__DLTHUB_TELEMETRY": "false",
    # Files of at most this many rows: dlt's normaliser reads a parquet file whole, so
    # one file per load made memory grow with the load (1,000,000 rows: +150 MB).
    "DATA_WRITER__FILE_MAX_ITEMS": "100000",
    # dlt's extract sleeps this long each time a resource runs out (10 ms by default; the kit's
    # resources are plain generators, no futures): ~30 ms of a 1,000-row incremental run.
    "EXTRACT__FUTURES_POLL_INTERVAL": "0.001",
}


def apply() -> None:
    for name, value in DLT_DEFAULTS.items():
        os.environ.setdefault(name, value)
