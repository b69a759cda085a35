"""The layout under results/ and resources/ has one owner, cft.paths: no other module, entry
script or rule file spells a path template there."""

from __future__ import annotations

import ast
import re

from conftest import REPO

from cft import paths

OWNER = REPO / "src" / "cft" / "paths.py"
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
