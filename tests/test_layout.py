"""The package's shape: stage folders without import loops, small modules, one mask, and
notebooks that use only the public surface."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import analytics_kit
import analytics_kit.redact

PACKAGE = Path(analytics_kit.__file__).parent
NOTEBOOKS = PACKAGE.parent / "notebooks"
MAX_LINES = 400
# The seam is the one file a dlt upgrade is checked in (see seam.py): splitting it to stay short
# would scatter what it exists to keep together. It may grow to this, and no further.
# 830 until the thirteenth session, which added a third memo of dlt's repeated costs (TypedDict hints, ~50 ms);
# 860 until the fourteenth, which added another (capabilities without a resolution, ~40 ms) and the config
# checks' use of the TypedDict memo. 995 until the twentieth, which reads rest_api's start parameter (to look up
# the keys a busy listing's last pass missed, see fetch/vouched.py). 1095 until the twenty-third, whose
# primary_key reads a key the columns hint declares, as dlt's merge does. 1101 until the twenty-fourth, whose
# replace deletes the soft-deleted rows it staged in its swap, so that its pages can become dlt's merge in place,
# and drops an abandoned extraction's package through dlt 1.31's abort_packages where it has it.
# 1202 in the twenty-seventh, which merged resource_defaults' columns into a resource's as rest_api does; 1190 again
# in the twenty-eighth, which shapes decimals on the resources rest_api built instead (public apply_hints), and 1215
# with its reflection of the destination's column types into dlt's schema (see store/stored_types.py); 1226 in the
# thirty-fourth, whose keep_traces_in_memory stops dlt pickling a run's trace (it kept a key copied into a path).
SEAM_MAX_LINES = 1240  # every reach below dlt's public API is here, by design (see seam.py)


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Kit modules ``name`` imports when it is imported (not those imported inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        found |= {t for t in targets if t in known and t != name}
    return found


def test_no_import_loops() -> None:
    mods = modules()
    graph = {name: top_level_imports(name, path, set(mods)) for name, path in mods.items()}
    loops: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            loops.append(trail[trail.index(node):] + [node])
            return
        for nxt in sorted(graph[node]):
            # a package's __init__ importing its own modules is how packages work, not a loop
            if nxt.startswith(node + ".") or node.startswith(nxt + ".") and not graph.get(nxt, set()) & {node}:
                continue
            visit(nxt, trail + [node])

    for start in sorted(graph):
        visit(start, [])
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops[:10])


def test_no_module_is_long() -> None:
    limit = {"analytics_kit.seam": SEAM_MAX_LINES}
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > limit.get(name, MAX_LINES)}
    assert not long, f"modules over {MAX_LINES} lines ({SEAM_MAX_LINES} for the seam): {long}"


def test_one_mask() -> None:
    """Every masked secret reads the same, whichever part of the kit masked it."""
    masks = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and "MASK" in t.id for t in node.targets):
                masks[name] = ast.unparse(node.value)
    assert masks == {"analytics_kit.redact": repr(analytics_kit.redact.MASK)}, masks


def notebook_code() -> list[tuple[str, str]]:
    cells = []
    for book in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(book.read_text())["cells"]:
            if cell["cell_type"] == "code":
                cells.append((book.name, "".join(cell["source"])))
    return cells


def test_notebooks_use_only_public_names() -> None:
    public = set(analytics_kit.__all__)
    wrong = []
    for book, code in notebook_code():
        for line in code.splitlines():
            if line.lstrip().startswith(("%", "!")):
                continue
            for module in re.findall(r"\banalytics_kit\.(\w+)", line):
                if module not in public:
                    wrong.append((book, line.strip()))
            match = re.match(r"\s*from analytics_kit import (.+)", line)
            if match:
                names = [n.strip().split(" as ")[0] for n in match.group(1).split(",")]
                wrong += [(book, line.strip()) for n in names if n not in public]
            for name in re.findall(r"\bak\.(\w+)", line):
                if name not in public:
                    wrong.append((book, line.strip()))
    assert notebook_code(), "no notebook cells found"
    assert not wrong, f"notebooks reach past the public surface: {wrong}"


def test_the_layout_map_names_every_folder() -> None:
    """README's "Where the code lives" lists each stage folder and top-level module."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Where the code lives", 1)[1].split("\n## ", 1)[0]
    for path in sorted(PACKAGE.iterdir()):
        if path.name.startswith(("_", ".")) or path.suffix not in ("", ".py"):
            continue
        assert f"`{path.name}" in section, f"{path.name} is missing from README's map"
