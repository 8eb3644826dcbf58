"""The package's imports run one way: every import inside routelens/ goes to its own layer or a
lower one, as the package docstring lists them, and no modules import each other in a circle.
Imports inside functions count (they run); those under `if TYPE_CHECKING:` do not (they never run)."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import networkx as nx

import routelens

ROOT = Path(routelens.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def layers() -> dict[str, int]:
    """Module pattern -> layer, read from the package docstring ("  3. name: a, b.*, c")."""
    out = {}
    for number, names in re.findall(r"^\s+(\d+)\. [^:]+: (.+)$", routelens.__doc__, flags=re.M):
        for name in names.split(","):
            name = name.strip()
            out["routelens" if name == "routelens" else f"routelens.{name}"] = int(number)
    return out


def layer_of(module: str, table: dict[str, int]) -> int:
    if module in table:
        return table[module]
    hits = [n for pattern, n in table.items() if fnmatch.fnmatchcase(module, pattern)]
    assert hits, f"{module} is in no layer: add it to the list in routelens/__init__.py"
    return max(hits)


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    type_only = {id(n) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
            # `from .. import interrupt` imports the module interrupt, not the whole package
            out |= subs if len(subs) == len(node.names) else ({base} | subs) & set(MODULES)
    out.discard(module)
    return out


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module in MODULES:
        graph.add_edges_from((module, target) for target in imports_of(module))
    return graph


def test_the_reader_sees_imports_inside_functions_and_relative_ones():
    found = imports_of("routelens.models.model")
    assert {"routelens.trace.capture", "routelens.trace.trace", "routelens.store"} <= found  # in functions
    assert "routelens.interrupt" in imports_of("routelens.trace.capture")  # from .. import interrupt
    assert "routelens.trace.trace" not in imports_of("routelens.routes.graph")  # TYPE_CHECKING only


def test_no_import_circle_inside_the_package():
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def test_imports_run_from_higher_layers_to_lower_ones():
    table = layers()
    assert len(set(table.values())) >= 9
    upward = [f"{a} (layer {layer_of(a, table)}) imports {b} (layer {layer_of(b, table)})"
              for a, b in import_graph().edges if layer_of(b, table) > layer_of(a, table)]
    assert not upward, "\n".join(upward)
