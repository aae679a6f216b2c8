"""Settings the kit applies to dlt before dlt reads its configuration.

Environment variables are dlt's highest-priority config provider, and setdefault
keeps any value the user chose.
"""

import os

DLT_DEFAULTS = {
    # dlt sends anonymous telemetry to an outside host unless this is off.
    "RUNTIME__DLTHUB_TELEMETRY": "false",
}


def apply() -> None:
    for name, value in DLT_DEFAULTS.items():
        os.environ.setdefault(name, value)
