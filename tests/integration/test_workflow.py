"""The Snakemake workflow itself: planned jobs for both configs, a real run of the corpus
stage, the stage CLIs, and lint/format cleanliness."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import BIN, REPO, job_counts, snakemake


def test_paper_grid_plans_every_download_corpus_and_base_model_job():
    result = snakemake("-n", "--forceall", "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    # 2 domains; 2 Llama-2 chat models + 2 AdaptLLM baselines
    assert counts["download_corpus"] == 2
    assert counts["download_model"] == 4
    assert counts["base_model"] == 4
    assert counts["corpus"] == 2
    assert counts["autogen"] == 2  # one per domain
    assert counts["tokenize"] == 2 * 2 * 4  # domains x grid models x trained methods
    assert counts["export"] == 2
    # domains x grid models x methods other than chat x the two training seeds
    assert counts["train"] == 2 * 2 * 4 * 2
    # one job per evaluated model (domain, model, method, seed), scoring its domain's suite:
    # the chat row once and every trained row per seed, plus the AdaptLLM chat row of their
    # domain
    assert counts["evaluate"] == 2 * 2 * (1 + 4 * 2) + 1 + 1
    assert counts["download_eval_task"] == 7 + 3
    assert "demo_data" not in counts  # the paper config never touches demo data


def test_paper_config_plans_two_seeds_and_the_authors_synthetic_tasks(paper_config):
    """Two training runs per trained cell, and the synthetic tasks the authors published:
    polynomial and relu on isotropic inputs, sumdot on skewed ones, relu for 100000 steps."""
    from cft.core.settings import stage_settings

    result = snakemake("-n", "--forceall", "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    for seed in (1234, 1235):  # a train job per trained cell and seed
        assert result.stdout.count(f"seed={seed}") == 2 * 2 * 4
    assert counts["synthetic_pretrain"] == 3  # seeds
    assert counts["synthetic_finetune"] == 3 * 3 * 3  # tasks x conditions x seeds
    assert result.stdout.count("task=relu") == 3 * 3
    settings = {
        task: stage_settings(paper_config, "synthetic_finetune", scale="paper", task=task)
        for task in ("polynomial", "sumdot", "relu")
    }
    assert {task: s["x_covariance"] for task, s in settings.items()} == {
        "polynomial": "isotropic",
        "sumdot": "skewed",
        "relu": "isotropic",
    }
    assert settings["relu"]["scale"]["task_finetune_steps"] == {"relu": 100000}


def test_download_target_plans_only_downloads():
    result = snakemake("download_all", "-n", "--forceall", "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts == {
        "download_corpus": 2,
        "download_model": 4,
        "download_eval_task": 7 + 3,
        "download_synthetic_reference": 1,
        "download_all": 1,
        "total": 18,
    }


def test_demo_plans_offline_jobs_only():
    result = snakemake("-n", "--forceall")  # whatever results/ already holds
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["demo_data"] == 2 and counts["corpus"] == 2
    assert counts["base_model"] == 1
    assert counts["tokenize"] == 2 * 4 and counts["autogen"] == 2  # trained methods
    assert counts["train"] == 2 * 4  # cpt, cft, negcft, autocft per domain
    assert counts["evaluate"] == 5 * 2  # one job per evaluated model
    assert "finben_demo" not in counts  # the FinBen-format sets are not in the demo suites
    # synthetic experiment: a pretraining per seed, a fine-tuning per (condition, seed)
    assert counts["synthetic_pretrain"] == 3 and counts["synthetic_finetune"] == 3 * 3
    assert counts["synthetic_summary"] == 1
    assert not any(rule.startswith("download") for rule in counts)


def test_corpus_stage_runs_end_to_end(tmp_path):
    """A real snakemake run of the demo corpus chain in a scratch working directory."""
    targets = [f"results/corpus/{d}/stats.json" for d in ("biomed", "finance")]
    # targets first: --configfile takes every value that follows it
    args = [*targets, "--cores", "2", "--directory", str(tmp_path)]
    args += ["--configfile", str(REPO / "config" / "config.yaml")]
    result = snakemake(*args)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for domain in ("biomed", "finance"):
        stats = json.loads((tmp_path / "results" / "corpus" / domain / "stats.json").read_text())
        source = config["domains"][domain]["source"]
        generated = source["n_entities"] * source["documents_per_entity"]
        assert stats["documents_in"] == generated == stats["documents_out"]
        assert (tmp_path / "logs" / "corpus" / f"{domain}.log").read_text()
    # nothing to do on a second run
    again = snakemake(*args, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parametrize(
    "stage",
    [
        "data.corpus",
        "data.demo_data",
        "data.base_model",
        "data.download",
        "data.finben_demo",
        "packing.tokenize",
        "packing.autogen",
        "packing.export",
        "training",
        "evaluation.evaluate",
        "evaluation.knowledge_curve",
        "tables.table",
        "synthetic",
        "core.restore",
    ],
)
def test_stage_cli_help(stage):
    result = subprocess.run(
        [sys.executable, "-m", f"cft.{stage}", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


# Every config the project ships, as it is meant to be run (recommended.yaml is an overlay on
# paper.yaml); the Makefile's lint target lints the same.
SHIPPED_CONFIGS = {
    "demo": ["config/config.yaml"],
    "paper": ["config/paper.yaml"],
    "recommended": ["config/paper.yaml", "config/recommended.yaml"],
    "gemma3": ["config/config.yaml", "config/examples/gemma3-270m.yaml"],
    "own_domain": ["config/config.yaml", "config/examples/own_domain.yaml"],
    "test": [".test/config/config.yaml"],
}
LINTERS = {
    "ruff check": [str(BIN / "ruff"), "check", "."],
    "ruff format": [str(BIN / "ruff"), "format", "--check", "."],
    "snakefmt": [str(BIN / "snakefmt"), "--check", "workflow/Snakefile", "workflow/rules"],
    **{
        f"snakemake --lint ({name})": [str(BIN / "snakemake"), "--lint", "--configfile", *files]
        for name, files in SHIPPED_CONFIGS.items()
    },
}


def test_every_shipped_config_is_linted():
    shipped = {
        p.relative_to(REPO).as_posix()
        for folder in ("config", "config/examples", ".test/config")
        for p in (REPO / folder).glob("*.yaml")
    }
    assert shipped == {f for files in SHIPPED_CONFIGS.values() for f in files}


@pytest.mark.parametrize("name", sorted(LINTERS))
def test_lint_clean(name):
    result = subprocess.run(LINTERS[name], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    if name.startswith("snakemake --lint"):
        assert "Congratulations" in result.stdout + result.stderr


def test_paper_cells_plans_exactly_the_cells_with_a_paper_number():
    """12 trained cells (CPT and CFT for both models and domains, -CFT for 7B biomed, 13B
    biomed and 7B finance, TextAdaptCFT for 7B biomed) x 2 seeds, and their evaluations."""
    result = snakemake("paper_cells", "-n", "--forceall", "--configfile", "config/paper.yaml")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["train"] == 12 * 2
    assert counts["autogen"] == 1  # TextAdaptCFT is reported for biomed only
    # one job per evaluated model, scoring its domain's suite: untrained rows, chat x 2 models
    # x 2 domains and AdaptLLM medicine; trained: 7 biomed and 5 finance cells, each per seed
    assert counts["evaluate"] == 2 * 2 + 1 + (7 + 5) * 2
