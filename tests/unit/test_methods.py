"""The method vocabulary has one owner, cft.core.methods: no other module of the package, entry
script or rule file spells a method's name."""

from __future__ import annotations

import ast
import re

from conftest import REPO

from cft.core.methods import METHODS, UNTRAINED, label, method

# Literals equal to a method name that mean something else.
NOT_METHODS = {
    # packing.prompt_format's value: the chat template, not the untrained method
    ("src/cft/packing/packer.py", "chat"),
    ("src/cft/packing/tokens.py", "chat"),
    # the authors' own name for their CFT condition, in their files' column headers
    ("src/cft/synthetic/reference.py", "cft"),
}


def docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def method_literals_in_python(path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    skip = docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in METHODS
        and id(node) not in skip
    ]


def method_literals_in_rules(path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        for match in re.finditer(r"\"([^\"]*)\"|'([^']*)'", code):
            text = match.group(1) or match.group(2) or ""
            if text in METHODS:
                found.append((number, text))
    return found


def test_no_method_name_is_spelt_outside_the_registry():
    python = [
        *(p for p in (REPO / "src" / "cft").rglob("*.py") if "lm_eval_tasks" not in p.parts),
        *(REPO / "workflow" / "scripts").glob("*.py"),
    ]
    strays = []
    for path in sorted(python):
        name = str(path.relative_to(REPO))
        if name == "src/cft/core/methods.py":
            continue
        strays += [
            f"{name}:{line}: {text!r}"
            for line, text in method_literals_in_python(path)
            if (name, text) not in NOT_METHODS
        ]
    for path in sorted((REPO / "workflow").rglob("*.smk")):
        name = str(path.relative_to(REPO))
        strays += [f"{name}:{line}: {text!r}" for line, text in method_literals_in_rules(path)]
    assert strays == []


def test_the_registry_answers_what_the_stages_ask():
    assert [m for m in METHODS if METHODS[m].trains] == ["cpt", "cft", "negcft", "autocft"]
    assert UNTRAINED == "chat" and not method(UNTRAINED).trains
    assert [m for m in METHODS if METHODS[m].fixed_prompts] == ["cft", "negcft"]
    assert [m for m in METHODS if METHODS[m].generated_prompts] == ["autocft"]
    assert label("cft") == "Chat (CFT)" and label("AdaptLLM") == "AdaptLLM"
