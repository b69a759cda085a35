"""The paper path, end to end: `snakemake all` on the paper-shaped miniature
(tests/miniature/build.py: config/paper.yaml's shape at toy sizes, hub stand-ins on disk)
through the real single-node SLURM and the project's slurm profile, offline.

Every rule of the paper DAG runs: hub downloads from the HF cache, corpus building from the hub
layouts, TextAdaptCFT generation on vLLM's CPU build, packing, 2-process FSDP2 training of
every method, lm-eval's own built-in medical tasks and the FinBen tasks on hub-shaped datasets
caches, the tables with the paper's numbers beside ours, and the synthetic experiment with the
authors' curves."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import (
    BIN,
    REPO,
    SLURM_ENV,
    SLURM_PROFILE_ARGS,
    job_counts,
    requires_slurm,
    slurm_jobs,
)
from miniature.build import MMLU_SUBJECTS, build

from cft.core.config import training_seeds
from cft.core.io import OUTPUT_MARKER
from cft.core.paths import eval_json, model_dir

pytestmark = requires_slurm

MODEL = "llama-2-7b-chat"
METHODS = ("cpt", "cft", "negcft", "autocft")
BIOMED_TASKS = [f"mmlu_{subject}" for subject in MMLU_SUBJECTS] + ["medqa_4options"]
FINANCE_TASKS = ["finben_fiqasa", "finben_causal20", "finben_multifin"]
# Local rules run where snakemake runs (the login node), never as SLURM jobs.
LOCAL_RULES = {"download_model", "download_eval_task", "download_synthetic_reference", "all"}


def check_jobs_fit_the_node(config: Path, workdir: Path, env: dict) -> None:
    """A job that asks for more CPUs or memory than the node has stays pending forever
    (PartitionConfig): refuse that before submitting anything."""
    plan = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "-n",
            "--directory",
            str(workdir),
            "--configfile",
            str(config),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    cpus = os.cpu_count()
    for block in plan.stdout.split("\nrule ")[1:] + plan.stdout.split("\nlocalrule ")[1:]:
        rule = block.split(":", 1)[0]
        threads = re.search(r"threads: (\d+)", block)
        assert not threads or int(threads[1]) <= cpus, f"{rule} asks {threads[1]} CPUs > {cpus}"
        mem = re.search(r"mem_mb=(\d+)", block)
        assert not mem or int(mem[1]) <= 16000, f"{rule} asks {mem[1]} MB"


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    root = tmp_path_factory.mktemp("miniature")
    config = build(root)
    workdir = root / "work"
    workdir.mkdir()
    check_jobs_fit_the_node(
        config, workdir, {**os.environ, "HF_HOME": str(root / "hf_home"), "HF_HUB_OFFLINE": "1"}
    )
    before = {job["id"] for job in slurm_jobs()}
    command = [
        "timeout",
        "-k",
        "10",
        "2700",  # 25 min was not enough on a 2-core AMD EPYC (2026-11-30); a guard against hangs
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        *SLURM_PROFILE_ARGS,
        "--jobs",
        "4",  # the test node declares twice its cores (scripts/slurm_up.sh)
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
    ]
    env = {**os.environ, "HF_HOME": str(root / "hf_home"), "HF_HUB_OFFLINE": "1", **SLURM_ENV}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    submitted = [job for job in slurm_jobs() if job["id"] not in before]
    seed = training_seeds(yaml.safe_load(config.read_text()))[0]
    return SimpleNamespace(workdir=workdir, result=result, submitted=submitted, seed=seed)


def read(workdir: Path, path: str) -> dict:
    return json.loads((workdir / path).read_text())


def test_all_runs_through_slurm(miniature):
    result, submitted = miniature.result, miniature.submitted
    assert result.returncode == 0, result.stderr[-5000:]
    counts = job_counts(result.stderr)
    # one job per evaluated model (the chat model, each method's, the domain's AdaptLLM
    # baseline) scoring its domain's whole suite
    expected_evaluations = 2 * (1 + len(METHODS) + 1)
    assert counts["train"] == 2 * len(METHODS)
    assert counts["evaluate"] == expected_evaluations
    # one tokenization per trained method: the untrained chat row reads none
    assert counts["autogen"] == 2 and counts["tokenize"] == 2 * len(METHODS)
    remote = sum(n for rule, n in counts.items() if rule not in LOCAL_RULES | {"total"})
    assert len(submitted) == remote
    assert all(job["state"] == "COMPLETED" for job in submitted), submitted
    assert {job["comment"].split("_wildcards")[0] for job in submitted} >= {
        "rule_train",
        "rule_evaluate",
        "rule_autogen",
        "rule_table",
    }


def test_training_ran_two_process_fsdp2_with_the_authors_recipe(miniature):
    """paper.yaml's settings, which are the authors': pure bf16 (weights, AdamW state and the
    gradient reduction in bf16), per-document chunks; FSDP2 over 2 processes."""
    workdir = miniature.workdir
    for domain in ("biomed", "finance"):
        for method in METHODS:
            folder = model_dir(domain, MODEL, method, miniature.seed)
            metrics = read(workdir, f"{folder}/train_metrics.json")
            assert metrics["parallelism"] == "fsdp2" and metrics["world_size"] == 2
            precision = metrics["precision"]
            assert precision["master_weights"] == precision["optimizer_state"] == "bfloat16"
            assert precision["compute"] == precision["gradient_reduction"] == "bfloat16"
            assert precision["gradient_sync"] == "every micro-batch"
            assert precision["saved_dtype"] == "bfloat16"
            assert metrics["ranks_that_read_weights"] == [0]
            assert metrics["checkpoint_seconds_this_run"] > 0  # sharded checkpoints were saved
            stats = read(workdir, f"results/tokenized/{domain}/{MODEL}/{method}/stats.json")
            assert stats["mode"] == "document"


def test_recommended_overlay_plans_the_same_dag(miniature):
    """The overlay changes settings, not the DAG: the same jobs are planned."""
    config = miniature.workdir.parent / "config.yaml"
    plan = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "-n",
            "--forceall",
            "--directory",
            str(miniature.workdir),
            "--configfile",
            str(config),
            str(REPO / "config" / "recommended.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=miniature.workdir,
        env={
            **os.environ,
            "HF_HOME": str(miniature.workdir.parent / "hf_home"),
            "HF_HUB_OFFLINE": "1",
        },
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert job_counts(plan.stdout)["train"] == 2 * len(METHODS)


def test_builtin_medical_and_finben_tasks_were_scored_offline(miniature):
    workdir = miniature.workdir
    for method in ("chat", *METHODS):
        for task in BIOMED_TASKS:
            record = read(workdir, eval_json("biomed", MODEL, method, miniature.seed, task))
            assert record["n_samples"]["effective"] == 6  # the rows of the test split
            assert 0 <= record["metrics"]["acc"] <= 1
        for task in FINANCE_TASKS:
            record = read(workdir, eval_json("finance", MODEL, method, miniature.seed, task))
            # paper.yaml's FinBen protocol: generated answers parsed as PIXIU parses them
            assert record["lm_eval_task"] == f"{task}_generative"
            assert {"weighted_f1", "micro_f1", "mcc", "missing"} <= set(record["metrics"])
    baseline = read(workdir, "results/eval/biomed/adaptllm-medicine-chat/chat/mmlu_anatomy.json")
    assert baseline["lm_eval_arguments"]["device"] == "cpu"


def test_prompts_were_generated_by_vllm_on_cpu(miniature):
    """paper.yaml's backend, vLLM, ran its CPU engine in the vLLM environment, and its table
    passes the checks the transformers backend's does (tests/{unit,integration}/test_autogen.py)."""
    import pandas as pd

    workdir = miniature.workdir
    for domain in ("biomed", "finance"):
        stats = read(workdir, f"results/prompts/{domain}/autogen_stats.json")
        assert stats["backend"] == "vllm" and stats["documents"] > 0
        log = (workdir / "logs" / "autogen" / f"{domain}.log").read_text()
        assert "running in the vLLM environment" in log and "vLLM CPU engine" in log
        table = pd.read_parquet(workdir / f"results/prompts/{domain}/autogen.parquet")
        assert len(table) == stats["documents"] and table.doc_id.is_unique
        assert (table.prompt.str.len() > 0).all()
        assert stats["fallback_total"] == int(table.fallback.notna().sum())


def test_tables_carry_the_papers_numbers_beside_ours(miniature):
    workdir = miniature.workdir
    table = (workdir / f"results/tables/biomed/{MODEL}/table.md").read_text()
    assert "AdaptLLM" in table and "Chat (CFT)" in table
    assert "/ 44.07" in table  # the paper's Chat row, mmlu_anatomy, beside our number
    finance = (workdir / f"results/tables/finance/{MODEL}/table.md").read_text()
    assert "Chat (-CFT)" in finance and "Paired difference to Chat (CPT)" in finance
    # intervals from lm-eval's per-sample logs, FinBen's weighted F1 included
    record = read(workdir, f"results/tables/finance/{MODEL}/table.json")
    for label in ("Chat", "Chat (CFT)"):
        for task in [*FINANCE_TASKS, "average"]:
            cell = record["intervals"][f"{label}|{task}"]
            assert cell["low"] <= cell["value"] <= cell["high"], (label, task, cell)
    assert "Chat (CFT)|average" in record["paired"]["Chat (CPT)"]


def test_synthetic_summary_has_the_authors_curves_when_available(miniature):
    workdir = miniature.workdir
    summary = read(workdir, "results/synthetic/paper/summary.json")
    assert set(summary["tasks"]) == {"polynomial", "sumdot", "relu"}  # paper.yaml's tasks
    reference = REPO.parent / "shared" / "reference" / "synthetic" / "loss.csv"
    if reference.is_file():
        assert summary["tasks"]["polynomial"]["cft"]["authors_at_step"] is not None
        # relu has no published curves; its runs' final MSE comes from their metrics.json
        assert summary["tasks"]["relu"]["cft"]["authors_at_step"] is None
        assert summary["tasks"]["relu"]["cft"]["mse_over_points"]["authors"] is not None
    assert summary["tasks"]["sumdot"]["cft"]["x_covariance"] == "skewed"


def test_every_file_written_under_results_is_a_declared_output(miniature):
    """No rule writes a file it does not declare: after the whole paper DAG, every file under
    results/ is a declared output or lies in a declared output folder (scratch, checkpoints
    and resume state are gone; the pipeline's own folder marker is the one exception)."""
    workdir = miniature.workdir
    summary = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--summary",
         "--directory", str(workdir), "--configfile", str(workdir.parent / "config.yaml")],
        capture_output=True, text=True, cwd=workdir,
        env={**os.environ, "HF_HOME": str(workdir.parent / "hf_home"), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert summary.returncode == 0, summary.stderr[-3000:]
    declared = {line.split("\t")[0] for line in summary.stdout.splitlines()[1:] if line}
    written = [
        path.relative_to(workdir).as_posix()
        for path in (workdir / "results").rglob("*")
        if path.is_file() and path.name != OUTPUT_MARKER
    ]
    undeclared = [
        path
        for path in written
        if path not in declared and not any(path.startswith(f"{d}/") for d in declared)
    ]
    assert len(written) > 100 and undeclared == []
