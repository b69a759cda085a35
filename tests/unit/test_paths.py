"""One owner for each fact: the layout under results/ and resources/ is cft.core.paths' (no other
module, entry script or rule file spells a path template there); a task's data and reported
metric are its task YAML's (no code decides them by the task's name); the synthetic function
classes and conditions are cft.core.methods' (cft.synthetic, which implements them, aside)."""

from __future__ import annotations

import ast
import re

from conftest import REPO

from cft.core import paths

OWNER = REPO / "src" / "cft" / "core" / "paths.py"
TEMPLATE = re.compile(r"(?<![\w.])(results|resources)/")


def string_literals(source: str):
    """(line, text) of every string literal of a Python file that is not a docstring."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.lineno, node.value


def rule_strings(source: str):
    """(line, text) of the quoted strings of a rule file, comments left out."""
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        for match in re.finditer(r"\"([^\"]*)\"|'([^']*)'", code):
            yield number, match.group(1) or match.group(2) or ""


def test_no_path_template_outside_its_owner():
    python = [*sorted((REPO / "src" / "cft").rglob("*.py")),
              *sorted((REPO / "workflow" / "scripts").glob("*.py"))]  # fmt: skip
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in python
        if path != OWNER
        for line, text in string_literals(path.read_text())
        if TEMPLATE.search(text)
    ]
    offenders += [
        f"{path.relative_to(REPO)}:{line}: {text!r}"
        for path in sorted((REPO / "workflow").rglob("*.smk"))
        for line, text in rule_strings(path.read_text())
        if TEMPLATE.search(text)
    ]
    assert offenders == []


def code_strings():
    """(file:line, text) of every non-docstring string of the package, the entry scripts and
    the rule files."""
    python = [*sorted((REPO / "src" / "cft").rglob("*.py")),
              *sorted((REPO / "workflow" / "scripts").glob("*.py"))]  # fmt: skip
    for path in python:
        for line, text in string_literals(path.read_text()):
            yield path, f"{path.relative_to(REPO)}:{line}", text
    for path in sorted((REPO / "workflow").rglob("*.smk")):
        for line, text in rule_strings(path.read_text()):
            yield path, f"{path.relative_to(REPO)}:{line}", text


# A task's family decided by its name: a prefix or substring test on "demo_", "finben_", ...
TASK_NAME_TEST = re.compile(
    r"""startswith\(\s*["'](demo|finben|mmlu)_|["'](demo|finben|mmlu)_["']\s+in\b"""
)
# The synthetic names spelt out: a function class, or an alternation of the conditions.
SYNTHETIC_NAME = re.compile(r"^(polynomial|sumdot|relu)$|\b(polynomial|sumdot|relu|cpt\|cft)\|")


def test_task_facts_come_from_the_task_yamls():
    files = [*(REPO / "src" / "cft").rglob("*.py"), *(REPO / "workflow").rglob("*.py"),
             *(REPO / "workflow").rglob("*.smk")]  # fmt: skip
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted(files)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TASK_NAME_TEST.search(line)
    ]
    assert offenders == []


def test_synthetic_names_have_one_owner():
    owner = REPO / "src" / "cft" / "core" / "methods.py"
    implementation = REPO / "src" / "cft" / "synthetic"
    offenders = [
        f"{where}: {text!r}"
        for path, where, text in code_strings()
        if path != owner and implementation not in path.parents and SYNTHETIC_NAME.search(text)
    ]
    assert offenders == []


# The grid's arithmetic spelt out: a row's seeds (none for the untrained model), or the rows
# taken from the baselines.
GRID_ARITHMETIC = re.compile(
    r"\[None\] if \w+ == (UNTRAINED|\"chat\")|for \w+ in config\[\"baselines\"\]\.values\(\)"
)


def test_the_grid_has_one_definition():
    owner = REPO / "src" / "cft" / "core" / "grid.py"
    files = [*(REPO / "src" / "cft").rglob("*.py"), *(REPO / "workflow").rglob("*.py"),
             *(REPO / "workflow").rglob("*.smk")]  # fmt: skip
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted(files)
        if path != owner
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if GRID_ARITHMETIC.search(line)
    ]
    assert offenders == []
    grid = owner.read_text()
    assert GRID_ARITHMETIC.search(grid)  # the detector sees the owner's own definition


def test_the_owner_detectors_find_a_second_definition():
    assert TASK_NAME_TEST.search('return "weighted_f1" if "finben_" in task else "acc"')
    assert TASK_NAME_TEST.search("    return task.startswith('demo_')")
    assert not TASK_NAME_TEST.search('task.removeprefix("demo_")')
    assert SYNTHETIC_NAME.search("polynomial|sumdot|relu") and SYNTHETIC_NAME.search("sumdot")
    assert SYNTHETIC_NAME.search("cpt|cft|negcft")
    assert GRID_ARITHMETIC.search("    return [None] if method == UNTRAINED else SEEDS")
    assert GRID_ARITHMETIC.search('        for b in config["baselines"].values()')


def test_the_detector_finds_a_template():
    found = list(string_literals('"""results/ in a docstring"""\nx = f"results/{d}/a.json"\n'))
    assert [text for _, text in found if TEMPLATE.search(text)] == ["results/"]
    assert [t for _, t in rule_strings('    "results/x",  # results/ y') if TEMPLATE.search(t)]


def test_run_levels_round_trip():
    assert paths.parse_run(paths.run_name("cpt", 3)) == ("cpt", 3)
    assert paths.parse_run(paths.run_name("chat", None)) == ("chat", None)
    assert paths.model_dir("d", "m", "chat") == paths.base_model_dir("m")
    # Given Snakemake wildcards, the functions return the rules' templates.
    assert paths.model_dir("{domain}", "{model}", "{method}", "{seed}") == (
        "results/models/{domain}/{model}/{method}/seed{seed}"
    )
