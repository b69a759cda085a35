"""What each stage's result depends on: the slice of the config and the code behind it, declared
once per stage in :data:`STAGES`.

Both uses read that one declaration: the rules pass :func:`settings_digest` as a ``params``
value, so Snakemake reruns a job exactly when its effective settings or its stage's code change
(and its dependants, through their inputs), and nothing else; and every result's provenance
block (:func:`stage_provenance`) hashes the same slice and records the same digest
(``settings_digest``). Keys that only say where or how fast a job runs (memory, runtime, cores,
checkpoint frequency) are left out, and the digest is the SHA-256 of canonical JSON (sorted
keys), so writing the same config in another key order changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cft.config import (
    METHOD_PROMPTS,
    autogen_model,
    domain_source,
    load_prompt_file,
    resolve_path,
    train_resources,
)
from cft.provenance import config_hash, provenance
from cft.task_folders import protocol_task

PACKAGE_DIR = Path(__file__).resolve().parent

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
        ),
        # the device layout decides the batch plan and the numerics
        "layout": {k: resources[k] for k in ("nodes", "gpus_per_node", "per_device_batch_size")},
        "model": config["models"][model],
    }


def _evaluation(config: dict, *, model: str, task: str, **_) -> dict:
    evaluation = _without(
        config["evaluation"], "suites", "curves", "confidence", "finben", *SCHEDULING_KEYS
    )
    return {
        "evaluation": evaluation,
        "task": task,
        # the FinBen protocol, only where it changes the task that runs
        "lm_eval_task": protocol_task(config, task) if task else None,
        "model": config["models"].get(model),
    }


def _autogen(config: dict, **_) -> dict:
    return {
        "autogen": _without(config["autogen"], "gpus", *SCHEDULING_KEYS),
        "generator": config["models"][autogen_model(config)],
        "prompts": _prompt_files(config, "autogen", "cft"),
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


def _tokenize(config: dict, *, method: str, **_) -> dict:
    kind = METHOD_PROMPTS[method]
    unused = PROMPT_KEYS if kind is None else ("prompt_sampling",) if kind == "autogen" else ()
    return {
        "packing": _without(config["packing"], *SCHEDULING_KEYS, *unused),
        "max_seq_len": config["training"]["max_seq_len"],
        "method": method,
        "prompts": _prompt_files(config, kind) if kind in config["prompts"] else {},
        "seed": config["seed"],
    }


def _table(config: dict, *, domain: str, **_) -> dict:
    return {
        "confidence": config["evaluation"]["confidence"],
        "suite": config["evaluation"]["suites"].get(domain, []),
        "methods": config["grid"]["methods"],
        "baselines": config["baselines"],
    }


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
    """What a stage's result depends on: its code (modules or folders of the package) and the
    slice of the config, given the job's keys (domain, model, method, task, scale)."""

    code: tuple[str, ...]
    settings: Callable[..., dict]


STAGES = {
    "download_corpus": Stage(("download.py",), lambda c, *, domain, **_: domain_source(c, domain)),
    "download_model": Stage(("download.py",), lambda c, *, model, **_: c["models"][model]),
    "demo_data": Stage(
        ("demo_data.py", "demo_vocabulary.py"), lambda c, *, domain, **_: domain_source(c, domain)
    ),
    "finben_demo": Stage(("finben_demo.py",), lambda c, **_: {"seed": c["seed"]}),
    "base_model": Stage(("base_model.py",), lambda c, *, model, **_: c["models"][model]),
    "corpus": Stage(("corpus.py",), _corpus),
    "autogen": Stage(("autogen.py",), _autogen),
    "tokenize": Stage(("packing.py", "packer.py"), _tokenize),
    "export": Stage(
        ("export.py",),
        lambda c, **_: {
            "export": c["export"],
            "prompts": _prompt_files(c, "cft"),
            "seed": c["seed"],
        },
    ),
    "train": Stage(("training",), _training),
    "evaluate": Stage(("evaluation.py", "shared_context.py", "lm_eval_tasks"), _evaluation),
    "table": Stage(
        (
            "tables.py",
            "table_formats.py",
            "grid.py",
            "figures.py",
            "uncertainty.py",
            "plotting.py",
            "task_folders.py",
            "lm_eval_tasks",
        ),
        _table,
    ),
    "loss_figure": Stage(("figures.py", "plotting.py"), lambda c, **_: {}),
    "curves": Stage(
        ("curves.py", "training", "evaluation.py", "shared_context.py", "lm_eval_tasks"), _curves
    ),
    "synthetic": Stage(("synthetic",), _synthetic),
}


@functools.cache
def code_digest(stage: str) -> str:
    """SHA-256 over the source files of a stage (a folder counts every file under it)."""
    digest = hashlib.sha256()
    for name in STAGES[stage].code:
        root = PACKAGE_DIR / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def stage_settings(config: dict, stage: str, **keys: str | None) -> dict:
    """The config slice that determines one job's result (``keys``: the job's wildcards)."""
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; known: {sorted(STAGES)}")
    return STAGES[stage].settings(config, **keys)


def _digest(stage: str, settings: dict) -> str:
    return config_hash({"settings": settings, "code": code_digest(stage)})


def settings_digest(config: dict, stage: str, **keys: str | None) -> str:
    """SHA-256 of a job's settings and its stage's code (a rule's ``params`` value)."""
    return _digest(stage, stage_settings(config, stage, **keys))


def stage_provenance(stage: str, settings: dict, **kwargs) -> dict:
    """The provenance block of a result of ``stage`` made with ``settings`` (its
    :func:`stage_settings` slice): the slice's hash, and the digest the stage's rule reruns on.
    ``kwargs``: seed, backend and extra fields, as :func:`cft.provenance.provenance` takes."""
    return provenance(settings, **kwargs) | {"settings_digest": _digest(stage, settings)}


def evaluation_settings_hash(config: dict, model: str, task: str) -> str:
    """The hash an eval record stores of the settings it was made with (its code left out):
    a table refuses a record whose settings are not the config's."""
    return config_hash(stage_settings(config, "evaluate", model=model, task=task))
