"""Every reach below dlt's public API goes through ``analytics_kit/seam.py``.

A reach is: an import from a dlt module outside its public surface, a private attribute of a
dlt object, an attribute of a dlt object written over (a patched method), one of dlt's
undocumented names or table hints, a subclass of something only the seam imports, or a log
filter on dlt's messages. The scanner reads the kit's source; it does not run it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import analytics_kit
from tests.seam_scan import PACKAGE, reaches, seam_reaches


def kit_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "seam.py")


@pytest.mark.parametrize("path", kit_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_but_the_seam_reaches_into_dlt(path: Path) -> None:
    found = reaches(path)
    assert not found, "reaches into dlt's internals outside seam.py:\n" + "\n".join(found)


def test_the_scanner_finds_each_kind_of_reach(tmp_path: Path) -> None:
    # Each line is one kind of reach the scanner must catch (so the test above can fail).
    cases = {
        "from dlt.extract.items_transform import ItemTransform": "import",
        "import dlt.common.jsonpath": "import",
        "x = resource._pipe": "private",
        "client.paginate = f": "patch",
        "incremental.initial_value = 1": "patch",
        "args = resource.explicit_args": "undocumented",
        "hint = {'x-stage-data-deduplicated': True}": "hint",
        "from analytics_kit.seam import ItemTransform\nclass S(ItemTransform):\n    pass": "subclass",
        "import logging\nclass F(logging.Filter):\n    pass": "log filter",
    }
    for code, kind in cases.items():
        module = tmp_path / "module.py"
        module.write_text(code + "\n")
        found = reaches(module)
        assert any(f": {kind}:" in line for line in found), (code, found)
    clean = tmp_path / "clean.py"
    clean.write_text("import dlt\nfrom dlt.sources.rest_api import rest_api_source\n"
                     "class A:\n    def f(self):\n        self._x = 1\n        return self._x\n")
    assert reaches(clean) == []


def test_every_seam_entry_says_why() -> None:
    """Each function and class in the seam has a docstring or a comment block above it."""
    source = (PACKAGE / "seam.py").read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    bare = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if ast.get_docstring(node) is None and not above.startswith("#") and not node.name.startswith("_"):
                bare.append(node.name)
    assert not bare, f"seam entries without a why: {bare}"
    assert seam_reaches() > 10  # the seam holds the reaches; an empty count means the scanner broke


def test_the_public_surface_names_no_seam_internals() -> None:
    public = set(analytics_kit.__all__)
    assert not public & {"seam", "jsonpath", "ItemTransform"}
    assert re.fullmatch(r"[\w.]+", analytics_kit.__name__)


def test_a_replace_deletes_its_flagged_rows_and_their_nested_rows_in_the_swap(tmp_path):
    """A replace that stages soft-deleted rows (so that it can become a merge) deletes them in its
    swap: the root rows flagged by ``hard_delete``, and the nested rows linked to them."""
    import dlt

    from analytics_kit.seam import _flagged_deletes, delete_flagged, link_nested_rows

    records = [{"id": 1, "deleted": False, "tags": [{"t": "a"}]},
               {"id": 2, "deleted": True, "tags": [{"t": "b"}, {"t": "c"}]},
               {"id": 3, "deleted": None, "tags": [{"t": "d"}]}]

    @dlt.source
    def api():
        return dlt.resource(records, name="events", write_disposition="replace", primary_key="id",
                            columns={"deleted": {"data_type": "bool", "hard_delete": True}})

    source = api()
    link_nested_rows(source, ["events"])  # as a kit replace links them
    pipeline = dlt.pipeline("flagged", destination=dlt.destinations.duckdb(str(tmp_path / "f.duckdb")),
                            dataset_name="main", pipelines_dir=str(tmp_path / "p"))
    pipeline.run(source)
    schema = pipeline.default_schema
    chain = [schema.tables["events"], schema.tables["events__tags"]]
    with pipeline.sql_client() as client:
        assert _flagged_deletes(chain, client) == []  # outside the block: dlt's replace as it is
        with delete_flagged(["events"]):
            statements = _flagged_deletes(chain, client)
        for statement in statements:
            client.execute_sql(statement)
        assert sorted(r[0] for r in client.execute_sql("SELECT id FROM events")) == [1, 3]
        assert sorted(r[0] for r in client.execute_sql("SELECT t FROM events__tags")) == ["a", "d"]
