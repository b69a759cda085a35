"""Every path the workflow reads or writes under results/ and resources/: the one owner of the
layout. The rules pass Snakemake wildcards (the string ``"{domain}"``, for example) and get the
rule's path template back; the stages' command lines pass real names.

Relative paths are relative to the working directory of the run (Snakemake's ``--directory``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cft.core.methods import UNTRAINED

RESULTS = "results"
RESOURCES = "resources"

# ---- sources ----------------------------------------------------------------------------------


def demo_data_dir(domain: str) -> str:
    """A demo domain's generated corpus, questions and manifest."""
    return f"{RESULTS}/demo_data/{domain}"


def demo_file(domain: str, name: str) -> str:
    """``documents.jsonl``, ``questions.jsonl`` or ``manifest.json`` of a demo domain."""
    return f"{demo_data_dir(domain)}/{name}"


def finben_demo_set(name: str) -> str:
    """One offline FinBen-format set, in the hub layout (read by the demo_finben_* tasks)."""
    return f"{RESULTS}/demo_data/finben/{name}"


def downloaded_corpus_dir(domain: str) -> str:
    return f"{RESOURCES}/corpora/{domain}"


def model_manifest(model: str) -> str:
    """Where a hub model lies in the HF cache (written by download_model)."""
    return f"{RESOURCES}/models/{model}.json"


def eval_data_manifest(task: str) -> str:
    return f"{RESOURCES}/eval_data/{task}.json"


SYNTHETIC_REFERENCE_DIR = f"{RESOURCES}/synthetic_reference"

# ---- stages -----------------------------------------------------------------------------------


def base_model_dir(model: str) -> str:
    return f"{RESULTS}/base_models/{model}"


def corpus_dir(domain: str) -> str:
    """The corpus stage's folder: ``documents.parquet`` and ``stats.json``, published as one."""
    return f"{RESULTS}/corpus/{domain}"


def corpus_table(domain: str) -> str:
    return f"{corpus_dir(domain)}/documents.parquet"


def corpus_stats(domain: str) -> str:
    return f"{corpus_dir(domain)}/stats.json"


def autogen_table(domain: str) -> str:
    return f"{RESULTS}/prompts/{domain}/autogen.parquet"


def autogen_stats(domain: str) -> str:
    return f"{RESULTS}/prompts/{domain}/autogen_stats.json"


def export_file(domain: str) -> str:
    return f"{RESULTS}/export/{domain}/cft_tuning_set.gemini_format.jsonl"


def export_stats(export_file: str | os.PathLike) -> Path:
    """The record written beside an export (example count, provenance)."""
    return Path(export_file).with_suffix(".stats.json")


def tokenized_dir(domain: str, model: str, method: str) -> str:
    return f"{RESULTS}/tokenized/{domain}/{model}/{method}"


def run_name(method: str, seed: int | str | None) -> str:
    """The path level of one evaluated model: `chat` (the base model, trained by no seed) or
    `{method}/seed{seed}` (one training run)."""
    return UNTRAINED if method == UNTRAINED else f"{method}/seed{seed}"


def parse_run(run: str) -> tuple[str, int | None]:
    """`cpt/seed3` -> ("cpt", 3); `chat` -> ("chat", None)."""
    if run == UNTRAINED:
        return run, None
    method, _, seed = run.partition("/seed")
    return method, int(seed)


def model_dir(domain: str, model: str, method: str, seed: int | str | None = None) -> str:
    """The model a (domain, model, method) row evaluates: the base model for `chat`, which is
    not trained, else the fine-tuned one of the training run with ``seed``."""
    if method == UNTRAINED:
        return base_model_dir(model)
    return f"{RESULTS}/models/{domain}/{model}/{run_name(method, seed)}"


def checkpoint_dir(domain: str, model: str, method: str, seed: int | str) -> str:
    return f"{RESULTS}/checkpoints/{domain}/{model}/{run_name(method, seed)}"


EVAL_ROOT = f"{RESULTS}/eval"


def run_eval_dir(domain: str, model: str, run: str, root: str = EVAL_ROOT) -> str:
    """The eval records of one evaluated model (a :func:`run_name`): one job writes them all."""
    return f"{root}/{domain}/{model}/{run}"


def task_record(folder: str | os.PathLike, task: str) -> str:
    """The lm-eval record of ``task`` in a :func:`run_eval_dir` folder."""
    return f"{folder}/{task}.json"


def run_eval_json(domain: str, model: str, run: str, task: str, root: str = EVAL_ROOT) -> str:
    """The lm-eval record of one evaluated model (a :func:`run_name`) on one task."""
    return task_record(run_eval_dir(domain, model, run, root), task)


def eval_json(
    domain: str, model: str, method: str, seed: int | str | None, task: str, root: str = EVAL_ROOT
) -> str:
    """The lm-eval record of one model on one task (its per-sample log lies beside it)."""
    return run_eval_json(domain, model, run_name(method, seed), task, root)


def samples_path(eval_json: str | os.PathLike) -> Path:
    """lm-eval's per-sample log, written beside an eval record."""
    return Path(eval_json).with_suffix(".samples.jsonl")


def curve_json(domain: str, model: str, method: str, seed: int | str) -> str:
    """The knowledge-acquisition curve of one training run (cft.evaluation.knowledge_curve)."""
    return f"{RESULTS}/curves/{domain}/{model}/{run_name(method, seed)}.json"


# One table's files, published together in its folder (cft.tables.table).
TABLE_FILES = {
    "md": "table.md",
    "csv": "table.csv",
    "tex": "table.tex",
    "json": "table.json",
    "png": "bars.png",
    "svg": "bars.svg",
}
TABLES_ROOT = f"{RESULTS}/tables"


def table_dir(domain: str, model: str, root: str = TABLES_ROOT) -> str:
    """The folder of the (domain, model) table: Markdown, CSV, LaTeX, JSON and bar chart."""
    return f"{root}/{domain}/{model}"


def table_file(domain: str, model: str, kind: str, root: str = TABLES_ROOT) -> str:
    return f"{table_dir(domain, model, root)}/{TABLE_FILES[kind]}"


def figure(domain: str, model: str, kind: str, ext: str) -> str:
    """A (domain, model) figure: ``loss`` or ``knowledge``, as png or svg."""
    return f"{RESULTS}/figures/{domain}/{model}_{kind}.{ext}"


# ---- synthetic experiment ---------------------------------------------------------------------


def synthetic_dir(scale: str) -> str:
    return f"{RESULTS}/synthetic/{scale}"


def synthetic_pretrain_dir(scale: str, seed: int | str) -> str:
    return f"{synthetic_dir(scale)}/pretrain/seed{seed}"


def synthetic_run_dir(scale: str, task: str, condition: str, seed: int | str) -> str:
    return f"{synthetic_dir(scale)}/{task}/{condition}/seed{seed}"


def work_dir(out_dir: str) -> str:
    """The resumable scratch of a synthetic run, beside its output folder."""
    parent, _, name = out_dir.rpartition("/")
    return f"{parent}/.{name}.work"


def synthetic_summary(scale: str, ext: str) -> str:
    return f"{synthetic_dir(scale)}/summary.{ext}"


def synthetic_figure(scale: str, task: str, ext: str = "png") -> str:
    """One figure per task of a scale's summary."""
    return f"{RESULTS}/figures/synthetic_{scale}_{task}.{ext}"
