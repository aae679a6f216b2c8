"""nbval settings for the teaching notebooks (pattern from pygae/galgebra's conftest).

nbval compares every stored output of a notebook with a fresh run, in strict mode.
Compared: ``text/plain`` and ``text/markdown`` results and ``stdout``. Not compared:

- ``text/html``: the same DataFrames as ``text/plain``, in markup that changes with
  pandas versions and display options;
- ``application/javascript``: widget and display glue, not results;
- ``stderr``: dlt's log lines and retry warnings; they are timing-dependent by nature.

A load's progress display is HTML only (see ``analytics_kit.run.progress``): nbval does not
apply display updates, so a plain-text progress display would be compared in its first
state against the stored last one.

Images: nbval 0.11 already leaves ``image/png`` and ``image/jpeg`` out of the comparison
unless it runs with ``--nbdime`` (see ``IPyNbFile.__init__`` in nbval/plugin.py), so
nothing is added for them here. A chart cell is still checked: it must run without error
and print the same ``<Figure size ...>`` text.
"""

SKIP_COMPARE = ("text/html", "application/javascript", "stderr")


def pytest_collectstart(collector):
    # IPyNbFile, nbval's collector of one notebook, is the one with skip_compare.
    if collector.path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare += SKIP_COMPARE
