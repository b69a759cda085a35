"""What each stage's result depends on: the slice of the config and the code behind it, declared
once per stage in :data:`STAGES`.

Both uses read that one declaration: the rules pass :func:`stage_digest` as a ``params``
value, so Snakemake reruns a job exactly when its effective settings or its stage's code change
(and its dependants, through their inputs), and nothing else; and every result's provenance
block (:func:`stage_provenance`) hashes the same slice and records the same digest
(``stage_digest``). Keys that only say where or how fast a job runs (memory, runtime, cores,
checkpoint frequency) are left out, and the digest is the SHA-256 of canonical JSON (sorted
keys), so writing the same config in another key order changes nothing.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cft.core.config import (
    autogen_model,
    domain_source,
    load_prompt_file,
    model_setting,
    resolve_path,
)
from cft.core.methods import AUTOGEN_PROMPTS, CFT_PROMPTS, METHODS
from cft.core.provenance import config_hash, provenance
from cft.evaluation.task_folders import protocol_task, task_dirs, task_fingerprint
from cft.training.launch import train_resources

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE = __name__.partition(".")[0]

# Keys that choose a job's place and size on the cluster, not what it computes.
SCHEDULING_KEYS = ("cpus_per_task", "mem_mb", "runtime", "num_proc", "gpu_model")


def _without(mapping: dict, *keys: str) -> dict:
    return {key: value for key, value in mapping.items() if key not in keys}


def _prompt_files(config: dict, *kinds: str) -> dict:
    """The prompt files' contents as parsed (they are config too, kept in their own files): an
    edited comment or re-indented line changes nothing, an edited prompt does."""
    return {kind: load_prompt_file(resolve_path(config["prompts"][kind])) for kind in kinds}


def _training(config: dict, *, model: str, **_) -> dict:
    resources = train_resources(config, model)
    return {
        # seeds: the run's seed is its own wildcard; the rest only schedule or checkpoint
        "training": _without(
            config["training"],
            "resources",
            "seeds",
            "save_steps",
            "save_every_minutes",
            "checkpoint_max_overhead",
            "keep_checkpoints",
            "checkpoint_on_signal",
        ),
        # the device layout decides the batch plan and the numerics
        "layout": {k: resources[k] for k in ("nodes", "gpus_per_node", "per_device_batch_size")},
        "model": config["models"][model],
    }


def _user_tasks(config: dict, tasks: list[str]) -> dict:
    """The files of each of ``tasks`` that is a user's (``evaluation.task_paths``), by digest:
    editing one reruns its own jobs; the project's tasks are in the stages' code digest."""
    dirs = task_dirs(config)
    found = {t: task_fingerprint(protocol_task(config, t), dirs) for t in tasks}
    return {task: files for task, files in found.items() if files}


def _evaluation(config: dict, *, model: str, task: str, **_) -> dict:
    evaluation = _without(
        config["evaluation"],
        "suites", "curves", "confidence", "finben", "task_paths", *SCHEDULING_KEYS,
    )  # fmt: skip
    settings = {
        "evaluation": evaluation,
        "task": task,
        # the FinBen protocol, only where it changes the task that runs
        "lm_eval_task": protocol_task(config, task) if task else None,
        "model": config["models"].get(model),
    }
    user_task = _user_tasks(config, [task] if task else [])
    if user_task:
        settings["task_files"] = user_task[task]
    return settings


def _autogen(config: dict, **_) -> dict:
    return {
        "autogen": _without(config["autogen"], "gpus", *SCHEDULING_KEYS),
        "generator": config["models"][autogen_model(config)],
        "prompts": _prompt_files(config, AUTOGEN_PROMPTS, CFT_PROMPTS),
        "seed": config["seed"],
    }


# Packing keys that only shape prompts: none of them changes a method without prompts, and a
# generated prompt (one per document) is not sampled.
PROMPT_KEYS = ("prompt_format", "prompt_separator", "prompt_sampling")


def _corpus(config: dict, *, domain: str, **_) -> dict:
    source = domain_source(config, domain)
    corpus = config["corpus"]
    if source["type"] != "openmedtext":  # the only reader of files that may not be UTF-8
        corpus = _without(corpus, "on_invalid_utf8")
    return {"source": source, "corpus": corpus}


def _tokenize(config: dict, *, model: str, method: str, **_) -> dict:
    kind = METHODS[method].prompts
    unused = (
        PROMPT_KEYS
        if kind is None
        else ("prompt_sampling",)
        if METHODS[method].generated_prompts
        else ()
    )
    return {
        "packing": _without(config["packing"], *SCHEDULING_KEYS, *unused),
        "max_seq_len": config["training"]["max_seq_len"],
        "method": method,
        # the model's token choices: its document separator and chat template arguments
        # (cft.packing.tokens), where the config sets them
        "model_tokens": {
            key: model_setting(config, model, key)
            for key in ("end_of_text", "chat_template_kwargs")
        },
        "prompts": _prompt_files(config, kind) if kind in config["prompts"] else {},
        "seed": config["seed"],
    }


def _table(config: dict, *, domain: str, **_) -> dict:
    suite = config["evaluation"]["suites"].get(domain, [])
    settings = {
        "confidence": config["evaluation"]["confidence"],
        "suite": suite,
        "methods": config["grid"]["methods"],
        "baselines": config["baselines"],
    }
    user_tasks = _user_tasks(config, suite)  # a task's YAML names the metric the table reports
    if user_tasks:
        settings["task_files"] = user_tasks
    return settings


def _curves(config: dict, *, domain: str, model: str, **_) -> dict:
    task = config["evaluation"]["curves"]["tasks"].get(domain)
    return {
        **_training(config, model=model),
        **_evaluation(config, model=model, task=task),
        "curves": _without(config["evaluation"]["curves"], "tasks"),
        "confidence": config["evaluation"]["confidence"],
    }


def _synthetic(config: dict, *, scale: str, task: str | None = None, **_) -> dict:
    synthetic = config["synthetic"]
    settings = {
        **{k: synthetic[k] for k in ("context_points", "neg_noise", "alignment_gradient")},
        "scale": synthetic["scales"][scale],
    }
    if task is not None:  # a fine-tuning run: its task's inputs
        settings["x_covariance"] = synthetic["x_covariance"].get(task, "isotropic")
    return settings


@dataclass(frozen=True)
class Stage:
    """What a stage's result depends on: its code and the slice of the config, given the job's
    keys (domain, model, method, task, scale).

    ``code``: the modules (or whole packages) its jobs run; the digest covers them and every
    module of this package they import, found from their import statements
    (:func:`code_files`), so no helper is left out by hand. ``data``: folders of the package
    read as data (lm-eval task YAMLs and their hooks), every file counted."""

    code: tuple[str, ...]
    settings: Callable[..., dict]
    data: tuple[str, ...] = ()
    # one job scores every task of its domain's suite, and keeps the records still current
    per_suite_task: bool = False


TASK_FILES = "evaluation/lm_eval_tasks"

# One entry per job rule, under the rule's own name (tests/unit/test_rule_names.py holds the
# rules to it: the rule passes digest_of("<its name>"), logs under logs/<its name>/ and runs in
# workflow/envs/<package of its code>.yaml).
STAGES = {
    "download_corpus": Stage(
        ("cft.data.download",), lambda c, *, domain, **_: domain_source(c, domain)
    ),
    "download_model": Stage(("cft.data.download",), lambda c, *, model, **_: c["models"][model]),
    "download_eval_task": Stage(
        ("cft.evaluation.evaluate",), lambda c, *, task, **_: {"task": task}
    ),
    "download_synthetic_reference": Stage(
        ("cft.synthetic.reference",), lambda c, **_: {"url": c["synthetic"]["reference_url"]}
    ),
    "demo_data": Stage(("cft.data.demo_data",), lambda c, *, domain, **_: domain_source(c, domain)),
    "finben_demo": Stage(("cft.data.finben_demo",), lambda c, **_: {"seed": c["seed"]}),
    "base_model": Stage(("cft.data.base_model",), lambda c, *, model, **_: c["models"][model]),
    "corpus": Stage(("cft.data.corpus",), _corpus),
    "autogen": Stage(("cft.packing.autogen", "cft.core.vllm_env"), _autogen),
    "tokenize": Stage(("cft.packing.tokenize",), _tokenize),
    "export": Stage(
        ("cft.packing.export",),
        lambda c, **_: {
            "export": c["export"],
            "prompts": _prompt_files(c, CFT_PROMPTS),
            "seed": c["seed"],
        },
    ),
    "train": Stage(("cft.training",), _training),
    "evaluate": Stage(
        ("cft.evaluation.evaluate", "cft.core.vllm_env"),
        _evaluation,
        data=(TASK_FILES,),
        per_suite_task=True,
    ),
    "knowledge_curve": Stage(("cft.evaluation.knowledge_curve",), _curves, data=(TASK_FILES,)),
    "table": Stage(("cft.tables.table",), _table, data=(TASK_FILES,)),
    "loss_figure": Stage(("cft.tables.figures",), lambda c, **_: {}),
    "knowledge_curve_figure": Stage(("cft.tables.figures",), lambda c, **_: {}),
    "synthetic_pretrain": Stage(("cft.synthetic",), _synthetic),
    "synthetic_finetune": Stage(("cft.synthetic",), _synthetic),
    "synthetic_summary": Stage(("cft.synthetic",), _synthetic),
}


def module_file(name: str, root: Path = PACKAGE_DIR) -> Path | None:
    """The source of module ``name`` of this package (``cft.a.b``), or None if no module has
    that name (``from cft.a import f``: ``cft.a.f`` is an attribute)."""
    base = root.joinpath(*name.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_names(path: Path, module: str) -> set[str]:
    """The ``cft`` names a module's import statements mention, at any depth of the code
    (functions import lazily): each ``import`` and ``from`` target, and each name imported
    from one (it may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..a import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return {name for name in names if name.partition(".")[0] == PACKAGE}


def _with_parents(name: str) -> list[str]:
    """Importing ``cft.a.b`` runs ``cft`` and ``cft.a`` first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.cache
def code_files(stage: str, root: Path = PACKAGE_DIR) -> tuple[Path, ...]:
    """Every source file a stage's jobs run: its modules (a package counts all of its
    modules), the modules of the package they import, transitively, and its data folders."""
    todo = []
    for name in STAGES[stage].code:
        path = module_file(name, root)
        if path is None:
            raise KeyError(f"stage {stage!r}: no module {name!r} under {root}")
        todo.append(name)
        if path.name == "__init__.py":  # a package: all of its modules
            todo += [
                ".".join([name, *p.relative_to(path.parent).with_suffix("").parts])
                for p in sorted(path.parent.rglob("*.py"))
            ]
    found: dict[str, Path] = {}
    while todo:
        for name in _with_parents(todo.pop()):
            path = module_file(name, root)
            if path is None or name in found:
                continue
            found[name] = path
            todo += sorted(imported_names(path, name))
    files = set(found.values())
    for folder in STAGES[stage].data:
        files.update(p for p in (root / folder).rglob("*") if p.is_file())
    return tuple(sorted(p for p in files if "__pycache__" not in p.parts))


@functools.cache
def code_digest(stage: str, root: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the names and bytes of :func:`code_files`."""
    digest = hashlib.sha256()
    for path in code_files(stage, root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stage_settings(config: dict, stage: str, **keys: str | None) -> dict:
    """The config slice that determines one job's result (``keys``: the job's wildcards)."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(STAGES)}")
    return STAGES[stage].settings(config, **keys)


def _digest(stage: str, settings: dict) -> str:
    return config_hash({"settings": settings, "code": code_digest(stage)})


def stage_digest(config: dict, stage: str, **keys: str | None) -> str:
    """SHA-256 of a job's settings and its stage's code (a rule's ``params`` value)."""
    return _digest(stage, stage_settings(config, stage, **keys))


def job_digest(config: dict, stage: str, **keys: str | None) -> str | dict[str, str]:
    """A rule's ``digest`` param: :func:`stage_digest` of the job's keys; for a stage whose job
    scores a domain's whole suite (``Stage.per_suite_task``), one digest per task of the
    suite, the one each task's record carries: a change to one task reruns the job, which
    rescores that task alone."""
    if not STAGES[stage].per_suite_task:
        return stage_digest(config, stage, **keys)
    suite = config["evaluation"]["suites"].get(keys["domain"], [])
    return {task: stage_digest(config, stage, **keys | {"task": task}) for task in suite}


def stage_provenance(stage: str, settings: dict, **kwargs) -> dict:
    """The provenance block of a result of ``stage`` made with ``settings`` (its
    :func:`stage_settings` slice): the slice's hash, and the digest the stage's rule reruns on.
    ``kwargs``: seed, backend and extra fields, as :func:`cft.core.provenance.provenance` takes."""
    return provenance(settings, **kwargs) | {"stage_digest": _digest(stage, settings)}


def evaluation_settings_hash(config: dict, model: str, task: str) -> str:
    """The hash an eval record stores of the settings it was made with (its code left out):
    a table refuses a record whose settings are not the config's."""
    return config_hash(stage_settings(config, "evaluate", model=model, task=task))
