"""The layout rules of the house, checked on the source with `ast` (issue 15).

- no import cycle among `deploystudio` modules, counting imports inside functions too (a cycle
  broken only by a function-local import is still a cycle);
- no module uses another module's private (`_name`) names;
- every `deploystudio/` module is under 700 lines;
- pages and components reach deployments through the target interface, not the local target
  or the store.

What cannot be fixed yet is listed in an allow-list below with its reason. Each list must only
shrink: a new offender fails, and so does an entry that no longer offends (delete it).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("deploystudio", "components", "views")
MAX_LINES = 700

# Each entry says why it is still allowed; a module others are changing now stays listed until
# their change lands.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}

# (importing module, "module._name") pairs.
ALLOWED_PRIVATE_USES: dict[tuple[str, str], str] = {}

ALLOWED_LONG_MODULES: dict[str, str] = {}

# Pages and components that still use the local target or the store directly. Issue 15: this
# list must shrink to empty once pages reach deployments only through the target interface.
ALLOWED_LOCAL_USES: frozenset[tuple[str, str]] = frozenset()

FORBIDDEN_IN_PAGES = ("deploystudio.deployment.store", "deploystudio.deployment.local")
FORBIDDEN_NAMES_IN_PAGES = ("LocalTarget",)


@dataclass(frozen=True)
class Import:
    """One import statement's target: the module, and the name taken from it if any."""

    module: str
    name: str | None
    line: int


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            # Scoring-script templates are text spliced into generated scripts, not modules.
            if "templates" in path.relative_to(ROOT).parts:
                continue
            name = _module_name(path)
            found[name] = Module(name, path, ast.parse(path.read_text(), filename=str(path)))
    return found


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports(module: Module) -> Iterator[Import]:
    """Every import in the module: at module level, inside functions and under TYPE_CHECKING
    alike (a cycle only annotations close is still two modules that need each other)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                yield Import(source, alias.name, node.lineno)


def _target(item: Import) -> str | None:
    """The project module an import loads: `from pkg import mod` loads pkg.mod."""
    known = modules()
    if item.name and f"{item.module}.{item.name}" in known:
        return f"{item.module}.{item.name}"
    return item.module if item.module in known else None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, module in modules().items():
        if not name.startswith("deploystudio"):
            continue
        edges = graph.setdefault(name, set())
        for item in imports(module):
            target = _target(item)
            if target and target != name and target.startswith("deploystudio"):
                edges.add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: Module) -> set[tuple[str, str]]:
    """`from X import _name` and `X._name` where X is another project module."""
    known = modules()
    uses: set[tuple[str, str]] = set()
    bound: dict[str, str] = {}  # local name -> project module it refers to
    for item in imports(module):
        if item.name is None:
            if item.module.split(".")[0] in PACKAGES:
                bound[item.module.split(".")[0]] = item.module.split(".")[0]
            continue
        target = _target(item)
        if target is None:
            continue
        if target == f"{item.module}.{item.name}":
            bound[item.name] = target
        elif _is_private(item.name) and target != module.name:
            uses.add((module.name, f"{target}.{item.name}"))
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                if alias.asname and isinstance(node, ast.ImportFrom):
                    source = _absolute(module, node)
                    if f"{source}.{alias.name}" in known:
                        bound[alias.asname] = f"{source}.{alias.name}"
                elif alias.asname and alias.name in known:
                    bound[alias.asname] = alias.name
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        dotted = _dotted(node.value)
        if dotted is None:
            continue
        head, *rest = dotted.split(".")
        if head not in bound:
            continue
        target = ".".join([bound[head], *rest])
        if target in known and target != module.name:
            uses.add((module.name, f"{target}.{node.attr}"))
    return uses


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def local_uses(module: Module) -> set[tuple[str, str]]:
    """What a page or component imports of the local target or the store."""
    uses: set[tuple[str, str]] = set()
    for item in imports(module):
        loaded = f"{item.module}.{item.name}" if item.name else item.module
        for forbidden in FORBIDDEN_IN_PAGES:
            # store_file.py and store_records.py are the store too.
            if loaded == forbidden or loaded.startswith((forbidden + ".", forbidden + "_")):
                uses.add((module.name, forbidden))
        if item.name in FORBIDDEN_NAMES_IN_PAGES:
            uses.add((module.name, item.name))
    return uses


def _report(title: str, found: set, allowed: set) -> str:
    new = sorted(found - allowed, key=str)
    stale = sorted(allowed - found, key=str)
    lines = [title]
    lines += [f"  new: {item}" for item in new]
    lines += [f"  no longer offends, delete from the allow-list: {item}" for item in stale]
    return "\n".join(lines)


def test_modules_are_found() -> None:
    names = modules()
    assert "deploystudio.deployment.store" in names
    assert "components.traffic_editor" in names
    assert "views.endpoints" in names


def test_no_import_cycle() -> None:
    found = set(cycles(import_graph()))
    allowed = set(ALLOWED_CYCLES)
    assert found == allowed, _report("import cycles among deploystudio modules:", found, allowed)


def _sample(name: str, *source_lines: str) -> Module:
    """A made-up module `name` with these lines, to check the checks themselves."""
    package, _, leaf = name.partition(".")
    return Module(name, ROOT / package / f"{leaf}.py", ast.parse("\n".join(source_lines)))


def test_cycle_detection_counts_function_level_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    module = _sample("deploystudio.x", "def f():", "    from deploystudio.deployment import store")
    assert [_target(item) for item in imports(module)] == ["deploystudio.deployment.store"]


def test_no_private_names_across_modules() -> None:
    found = set().union(*(private_uses(module) for module in modules().values()))
    allowed = set(ALLOWED_PRIVATE_USES)
    assert found == allowed, _report("private names used from another module:", found, allowed)


PRIVATE_SAMPLE = (
    "from deploystudio.deployment.store import _hidden",
    "from deploystudio.deployment import store as s",
    "import deploystudio.payloads",
    "s._other()",
    "deploystudio.payloads._third",
    "s.__name__",
)
PAGE_SAMPLE = (
    "from deploystudio.deployment.local.target import LocalTarget",
    "from deploystudio.deployment.store_file import acting_as",
    "def f():",
    "    import deploystudio.deployment.store",
    "from deploystudio.deployment.base import DeploymentTarget",
)


@pytest.mark.parametrize(
    ("check", "name", "lines", "expected"),
    [
        (
            private_uses,
            "components.x",
            PRIVATE_SAMPLE,
            {
                "deploystudio.deployment.store._hidden",
                "deploystudio.deployment.store._other",
                "deploystudio.payloads._third",
            },
        ),
        (
            local_uses,
            "views.x",
            PAGE_SAMPLE,
            {"LocalTarget", "deploystudio.deployment.local", "deploystudio.deployment.store"},
        ),
    ],
    ids=["private names", "pages past the interface"],
)
def test_detection_on_a_sample(
    check: Callable[[Module], set[tuple[str, str]]],
    name: str,
    lines: tuple[str, ...],
    expected: set[str],
) -> None:
    assert check(_sample(name, *lines)) == {(name, item) for item in expected}


def test_domain_modules_are_short() -> None:
    found = {
        name
        for name, module in modules().items()
        if name.startswith("deploystudio")
        and len(module.path.read_text().splitlines()) >= MAX_LINES
    }
    allowed = set(ALLOWED_LONG_MODULES)
    assert found == allowed, _report(f"modules of {MAX_LINES} lines or more:", found, allowed)


def test_pages_do_not_use_the_local_target_or_the_store() -> None:
    found = set().union(
        *(
            local_uses(module)
            for name, module in modules().items()
            if name.startswith(("components", "views"))
        )
    )
    allowed = set(ALLOWED_LOCAL_USES)
    assert found == allowed, _report("pages or components past the interface:", found, allowed)
