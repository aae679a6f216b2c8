"""Finds the kit's reaches below dlt's public API, by reading its source.

``python -m tests.seam_scan [package folder]`` prints them, module by module: the count
before and after moving them into the seam came from this.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from pathlib import Path

import dlt
from dlt.sources import DltResource, DltSource, incremental
from dlt.sources.helpers.rest_client import auth, paginators
from dlt.sources.helpers.rest_client.client import RESTClient

import analytics_kit

PACKAGE = Path(analytics_kit.__file__).parent

# dlt's public surface as the kit counts it: what dlt's docs teach users to import.
PUBLIC_MODULES = {
    "dlt",
    "dlt.sources",
    "dlt.sources.rest_api",
    "dlt.sources.rest_api.typing",
    "dlt.sources.rest_api.config_setup",
    "dlt.sources.helpers.rest_client",
    "dlt.sources.helpers.rest_client.auth",
    "dlt.sources.helpers.rest_client.client",
    "dlt.sources.helpers.rest_client.exceptions",
    "dlt.sources.helpers.rest_client.paginators",
    "dlt.sources.helpers.requests",
    "dlt.destinations",
}
# Public-looking names whose contents or meaning dlt does not document.
UNDOCUMENTED = {"explicit_args", "placement_affinity"}
# The kit's own filters: they mask secrets in every record, or clear the terminal's progress line before it, and
# match no dlt text.
OWN_FILTERS = {"RedactingFilter", "_LiveSources", "_ClearsLine"}


@lru_cache(maxsize=1)
def dlt_attributes() -> frozenset[str]:
    """Names of methods and attributes of the dlt objects the kit handles: writing one over is a patch."""
    classes = [RESTClient, DltResource, DltSource, type(incremental()), paginators.BasePaginator,
               auth.AuthConfigBase]
    classes += [c for c in vars(paginators).values() if isinstance(c, type) and issubclass(c, paginators.BasePaginator)]
    names = {name for cls in classes for name in dir(cls) if not name.startswith("__")}
    names |= set(vars(RESTClient("http://127.0.0.1")))
    return frozenset(names)


@lru_cache(maxsize=1)
def dlt_hints() -> frozenset[str]:
    """dlt's ``x-...`` table and column hints, as its schema code spells them (before dlt 1.31,
    some only in extract/hints.py)."""
    root = Path(dlt.__file__).parent
    found: set[str] = set()
    for path in [*(root / "common" / "schema").glob("*.py"), root / "extract" / "hints.py"]:
        found |= set(re.findall(r"[\"'](x-[a-z0-9-]+)[\"']", path.read_text()))
    return frozenset(found)


# Public, documented stdlib functions whose names start with an underscore.
STDLIB_UNDERSCORED = frozenset({"os._exit"})


def _own_private_names(package: Path) -> set[str]:
    """``_names`` the kit defines itself (functions, classes, attributes it assigns)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {n for n in names if n.startswith("_")}


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def reaches(path: Path, package: Path = PACKAGE) -> list[str]:
    """``path:line: kind: code`` for each reach in one module."""
    tree = ast.parse(path.read_text())
    own = _own_private_names(package)
    from_seam: set[str] = set()
    found: list[tuple[int, str, str]] = []

    def add(node: ast.AST, kind: str) -> None:
        found.append((node.lineno, kind, ast.unparse(node).splitlines()[0][:100]))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.startswith("dlt.") and module not in PUBLIC_MODULES:
                add(node, "import")
            if module.endswith("seam") or (node.level and module == "seam"):
                from_seam |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            if any(a.name.startswith("dlt.") and a.name not in PUBLIC_MODULES for a in node.names):
                add(node, "import")
        elif isinstance(node, ast.Attribute):
            if node.attr in UNDOCUMENTED:
                add(node, "undocumented")
            elif (node.attr.startswith("_") and not node.attr.startswith("__") and not _is_self(node.value)
                  and node.attr not in own and ast.unparse(node) not in STDLIB_UNDERSCORED):
                add(node, "private")
            elif (isinstance(node.ctx, ast.Store) and not _is_self(node.value)
                  and node.attr in dlt_attributes()):
                add(node, "patch")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in dlt_hints():
            add(node, "hint")
        elif isinstance(node, ast.Name) and node.id in UNDOCUMENTED:
            add(node, "undocumented")
        elif isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b).split("[")[0] for b in node.bases}
            if bases & from_seam:
                add(node, "subclass")
            if bases & {"logging.Filter", "Filter"} and node.name not in OWN_FILTERS:
                add(node, "log filter")
    return [f"{path}:{line}: {kind}: {code}" for line, kind, code in sorted(set(found))]


def seam_reaches(package: Path = PACKAGE) -> int:
    """How many reaches the seam itself holds (its imports, attributes, patches, hints)."""
    return len(reaches(package / "seam.py", package))


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE
    total = 0
    for module in sorted(root.rglob("*.py")):
        lines = reaches(module, root)
        total += len(lines)
        print(*lines, sep="\n") if lines else None
    print(f"{total} reaches in {root}")
