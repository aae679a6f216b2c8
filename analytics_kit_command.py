"""The ``analytics-kit`` command's entry point, kept outside the package on purpose.

Importing the package (pyarrow, DuckDB) takes about a second before ``analytics_kit.cli.run``
can handle anything: a Ctrl-C then printed a Python traceback and exited 1 or -2, and once the
interpreter's teardown of half-imported extension modules aborted (-6). Here an interrupt during
that import ends the command as one during its work does: "interrupted", status 130.
"""

import os
import sys

import analytics_kit_regex_cache as regex_cache


def run() -> None:
    regex_cache.install()  # before the imports whose patterns it keeps
    try:
        from analytics_kit.cli import run as command
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        os._exit(130)  # not the teardown of modules half imported
    command(before_exit=regex_cache.save)
