"""The package's shape holds: no import cycle (type-only and lazy imports included) and no
module over 400 lines, so each module stays one concern a reader can hold."""

from __future__ import annotations

from cft.core.settings import PACKAGE_DIR, imported_names, module_file

MAX_LINES = 400


def modules() -> dict[str, object]:
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "lm_eval_tasks" in path.parts:  # lm-eval's hooks, loaded by lm-eval
            continue
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        found[".".join(["cft", *parts]).removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module's imports of the package, resolved to modules (``from cft.a import f``:
    ``cft.a``), at any depth of the code, under ``TYPE_CHECKING`` too."""
    graph = {}
    for name, path in modules().items():
        targets = set()
        for imported in imported_names(path, name):
            while imported and module_file(imported) is None:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_the_cycle_detector_sees_a_type_only_cycle():
    graph = {"cft.a": {"cft.b"}, "cft.b": {"cft.c"}, "cft.c": {"cft.a"}, "cft.d": {"cft.a"}}
    assert cycles(graph) == [["cft.a", "cft.b", "cft.c"]]


def test_no_module_is_over_400_lines():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


# The one core module that reads stages' policies: the stage registry computes each stage's
# config slice, which for train and evaluate is the stage's own resolution of the config.
CORE_READS_STAGES = {"cft.core.settings"}


def test_the_core_imports_no_stage_package():
    """cft.core is the bottom layer: the stage packages import it, not the reverse."""
    upward = {
        name: sorted(t for t in targets if not t.startswith("cft.core") and t != "cft")
        for name, targets in import_graph().items()
        if name.startswith("cft.core.") and name not in CORE_READS_STAGES
    }
    assert {name: targets for name, targets in upward.items() if targets} == {}
