"""What each stage's result depends on: the slice of the config and the code behind it.

The rules pass :func:`settings_digest` as a ``params`` value, so Snakemake reruns a job exactly
when its effective settings or its stage's code change (and its dependants, through their
inputs), and nothing else: keys that only say where or how fast a job runs (memory, runtime,
cores, checkpoint frequency) are left out, and the digest is the SHA-256 of canonical JSON
(sorted keys), so writing the same config in another key order changes nothing.
The stages record the same digest in their provenance (``settings_digest``).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from cft.config import (
    METHOD_PROMPTS,
    autogen_model,
    domain_source,
    resolve_path,
    train_resources,
)
from cft.provenance import config_hash

PACKAGE_DIR = Path(__file__).resolve().parent

# Keys that choose a job's place and size on the cluster, not what it computes.
SCHEDULING_KEYS = ("cpus_per_task", "mem_mb", "runtime", "num_proc", "gpu_model")

# The module (or task folder) whose code makes each stage's result.
STAGE_CODE = {
    "download_corpus": ("download.py",),
    "download_model": ("download.py",),
    "demo_data": ("demo_data.py",),
    "finben_demo": ("finben_demo.py",),
    "base_model": ("base_model.py",),
    "corpus": ("corpus.py",),
    "autogen": ("autogen.py",),
    "tokenize": ("packing.py",),
    "export": ("export.py",),
    "train": ("training",),
    "evaluate": ("evaluation.py", "lm_eval_tasks"),
    "table": (
        "tables.py",
        "table_formats.py",
        "grid.py",
        "figures.py",
        "uncertainty.py",
        "plotting.py",
        "task_folders.py",
        "lm_eval_tasks",
    ),
    "loss_figure": ("figures.py", "plotting.py"),
    "curves": ("curves.py", "training", "evaluation.py", "lm_eval_tasks"),
    "synthetic": ("synthetic",),
}


def _without(mapping: dict, *keys: str) -> dict:
    return {key: value for key, value in mapping.items() if key not in keys}


@functools.cache
def code_digest(stage: str) -> str:
    """SHA-256 over the source files of a stage (a folder counts every file under it)."""
    digest = hashlib.sha256()
    for name in STAGE_CODE[stage]:
        root = PACKAGE_DIR / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _prompt_files(config: dict, *kinds: str) -> dict:
    """The prompt files' contents (they are config too, kept in their own files)."""
    return {kind: resolve_path(config["prompts"][kind]).read_text() for kind in kinds}


def _training(config: dict, model: str) -> dict:
    resources = train_resources(config, model)
    return {
        # seeds: the run's seed is its own wildcard; the rest only schedule or checkpoint
        "training": _without(
            config["training"], "resources", "seeds", "save_steps", "keep_checkpoints"
        ),
        # the device layout decides the batch plan and the numerics
        "layout": {k: resources[k] for k in ("nodes", "gpus_per_node", "per_device_batch_size")},
        "model": config["models"][model],
    }


def _evaluation(config: dict, model: str, task: str) -> dict:
    evaluation = _without(config["evaluation"], "suites", "curves", "confidence", *SCHEDULING_KEYS)
    return {"evaluation": evaluation, "task": task, "model": config["models"].get(model)}


def stage_settings(
    config: dict,
    stage: str,
    *,
    domain: str | None = None,
    model: str | None = None,
    method: str | None = None,
    task: str | None = None,
    scale: str | None = None,
) -> dict:
    """The config slice that determines one job's result."""
    if stage in ("demo_data", "download_corpus"):
        return domain_source(config, domain)
    if stage == "finben_demo":
        return {"seed": config["seed"]}
    if stage in ("base_model", "download_model"):
        return config["models"][model]
    if stage == "loss_figure":
        return {}
    if stage == "corpus":
        return {"source": domain_source(config, domain), "corpus": config["corpus"]}
    if stage == "autogen":
        generator = autogen_model(config)
        return {
            "autogen": _without(config["autogen"], "gpus", *SCHEDULING_KEYS),
            "generator": config["models"][generator],
            "prompts": _prompt_files(config, "autogen", "cft"),
            "seed": config["seed"],
        }
    if stage == "tokenize":
        kind = METHOD_PROMPTS[method]
        return {
            "packing": _without(config["packing"], *SCHEDULING_KEYS),
            "max_seq_len": config["training"]["max_seq_len"],
            "method": method,
            "prompts": _prompt_files(config, kind) if kind in config["prompts"] else {},
            "seed": config["seed"],
        }
    if stage == "export":
        return {
            "export": config["export"],
            "prompts": _prompt_files(config, "cft"),
            "seed": config["seed"],
        }
    if stage == "train":
        return _training(config, model)
    if stage == "evaluate":
        return _evaluation(config, model, task)
    if stage == "table":
        return {
            "confidence": config["evaluation"]["confidence"],
            "suite": config["evaluation"]["suites"].get(domain, []),
            "methods": config["grid"]["methods"],
            "baselines": config["baselines"],
        }
    if stage == "curves":
        return {
            **_training(config, model),
            **_evaluation(config, model, config["evaluation"]["curves"]["tasks"].get(domain)),
            "curves": _without(config["evaluation"]["curves"], "tasks"),
            "confidence": config["evaluation"]["confidence"],
        }
    if stage == "synthetic":
        synthetic = config["synthetic"]
        return {
            **{k: synthetic[k] for k in ("context_points", "neg_noise", "alignment_gradient")},
            "scale": synthetic["scales"][scale],
        }
    raise KeyError(f"unknown stage {stage!r}; known: {sorted(STAGE_CODE)}")


def settings_digest(config: dict, stage: str, **keys: str | None) -> str:
    """SHA-256 of a job's settings and its stage's code (a rule's ``params`` value)."""
    return config_hash(
        {"settings": stage_settings(config, stage, **keys), "code": code_digest(stage)}
    )


def evaluation_settings_hash(config: dict, model: str, task: str) -> str:
    """The hash an eval record stores of the settings it was made with (its code left out):
    a table refuses a record whose settings are not the config's."""
    return config_hash(stage_settings(config, "evaluate", model=model, task=task))
