"""Result tables: values equal the eval JSONs, the average rule, the join with the paper's
numbers, missing results, LaTeX, and what `snakemake tables` and the named experiment targets
plan."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, job_counts, snakemake

from cft.config import validate_config
from cft.tables import (
    METHOD_LABELS,
    PAPER_TASKS,
    REFERENCE_FILE,
    build_table,
    load_reference,
    to_latex,
    to_markdown,
    write_table,
)

DEMO_MODEL = "smollm2-135m-instruct"


def write_eval(root: Path, domain, model, method, task, metrics: dict) -> Path:
    """An eval record shaped as cft.evaluation writes it."""
    path = root / domain / model / method / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "domain": domain,
        "model": model,
        "method": method,
        "task": task,
        "metrics": metrics,
        "n_samples": {"original": 50, "effective": 50},
        "settings": {"backend": "hf"},
        "provenance": {"config_hash": "x"},
    }
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def config(demo_config):
    return validate_config(demo_config)


def fill_finance(root: Path, methods, *, skip=()) -> dict:
    values = {}
    for i, method in enumerate(methods):
        for j, task in enumerate(("demo_knowledge_finance_cloze", "demo_finben_fiqasa")):
            if (method, task) in skip:
                continue
            score = 0.2 + 0.05 * i + 0.01 * j
            metrics = {"acc": score, "weighted_f1": score / 2, "macro_f1": score / 3}
            write_eval(root, "finance", DEMO_MODEL, method, task, metrics)
            values[(method, task)] = metrics
    return values


def test_table_values_equal_the_eval_jsons(config, tmp_path):
    methods = config["grid"]["methods"]
    values = fill_finance(tmp_path, methods)
    table = build_table(config, "finance", DEMO_MODEL, tmp_path, load_reference())
    assert [row.label for row in table.rows] == [METHOD_LABELS[m] for m in methods]
    for (method, task), metrics in values.items():
        metric = "weighted_f1" if "finben" in task else "acc"
        assert table.ours[(METHOD_LABELS[method], task)] == pytest.approx(100 * metrics[metric])
    out = {k: tmp_path / "out" / f"t.{k}" for k in ("md", "csv", "tex", "json")}
    out |= {"png": tmp_path / "out" / "t.png", "svg": tmp_path / "out" / "t.svg"}
    write_table(config, "finance", DEMO_MODEL, eval_root=tmp_path, out=out)
    with out["csv"].open() as handle:
        rows = {(r["row"], r["task"]): r for r in csv.DictReader(handle)}
    for (method, task), metrics in values.items():
        metric = "weighted_f1" if "finben" in task else "acc"
        cell = rows[(METHOD_LABELS[method], task)]
        assert float(cell["ours"]) == pytest.approx(100 * metrics[metric], abs=1e-4)
    assert out["png"].stat().st_size > 10_000 and out["svg"].read_text().startswith("<?xml")


def test_average_is_the_unweighted_mean_and_needs_every_task(config, tmp_path):
    fill_finance(tmp_path, ["chat", "cpt"], skip={("cpt", "demo_finben_fiqasa")})
    table = build_table(config, "finance", DEMO_MODEL, tmp_path, load_reference())
    chat = [table.ours[("Chat", t)] for t in table.tasks]
    assert table.average(table.ours, "Chat") == pytest.approx(sum(chat) / len(chat))
    assert table.average(table.ours, "Chat (CPT)") is None  # never an average of what exists


def test_missing_results_are_dashes_with_a_footnote(config, tmp_path):
    fill_finance(tmp_path, ["chat"])
    table = build_table(config, "finance", DEMO_MODEL, tmp_path, load_reference())
    markdown = to_markdown(table)
    missing = tmp_path / "finance" / DEMO_MODEL / "cft" / "demo_finben_fiqasa.json"
    assert str(missing) in table.missing and str(missing) in markdown
    cft_line = next(line for line in markdown.splitlines() if line.startswith("| Chat (CFT) |"))
    assert cft_line.count("—") == len(table.columns())
    assert "**" in next(line for line in markdown.splitlines() if line.startswith("| Chat |"))


def test_every_paper_cell_lands_in_its_row_and_column(paper_config, tmp_path):
    config = validate_config(paper_config)
    reference = load_reference()
    for domain in ("biomed", "finance"):
        for model in config["grid"]["models"]:
            table = build_table(config, domain, model, tmp_path, reference)
            labels = {row.variant: row.label for row in table.rows if row.variant != "external"}
            for entry in reference:
                if entry["task"] == "average" or entry["domain"] != domain:
                    continue
                task = PAPER_TASKS.get(entry["task"], entry["task"])
                if entry["model"] == model and entry["variant"] in labels:
                    label = labels[entry["variant"]]
                elif entry["variant"] == "external":
                    label = next(r.label for r in table.rows if r.model == entry["model"])
                else:
                    continue  # other tables of the paper (base Llama-2, Gemini)
                if entry["table"] == "main" or (label, task) not in table.paper:
                    assert table.paper[(label, task)] == float(entry["value"]), entry
    # the paper's own averages agree with the average rule on its cells
    table = build_table(config, "biomed", "llama-2-7b-chat", tmp_path, reference)
    paper_average = next(
        float(e["value"])
        for e in reference
        if (e["table"], e["model"], e["variant"], e["task"])
        == ("main", "llama-2-7b-chat", "cft", "average")
    )
    assert table.average(table.paper, "Chat (CFT)") == pytest.approx(paper_average, abs=0.01)


def test_reference_file_is_the_projects_copy():
    assert REFERENCE_FILE == REPO / "data" / "paper_tables.csv"
    assert len(load_reference()) == 150


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX installation")
def test_latex_compiles(config, tmp_path):
    fill_finance(tmp_path, config["grid"]["methods"])
    table = build_table(config, "finance", DEMO_MODEL, tmp_path, load_reference())
    document = tmp_path / "table.tex"
    document.write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
        + to_latex(table)
        + "\\end{document}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", document.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]


# ---- targets ----------------------------------------------------------------------------------


def test_tables_target_plans_only_table_jobs_when_results_exist(tmp_path, converted_smollm2):
    """A working directory where the chat row of the biomed demo table is complete."""
    from cft.demo_data import run as generate_demo

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["grid"] = {"domains": ["biomed"], "models": [DEMO_MODEL], "methods": ["chat"]}
    config_file = tmp_path / "chat_only.yaml"
    config_file.write_text(yaml.safe_dump(config))
    source = config["domains"]["biomed"]["source"]
    generate_demo(
        source["generator"],
        source["n_entities"],
        source["documents_per_entity"],
        source["seed"],
        tmp_path / "results" / "demo_data" / "biomed",
    )
    shutil.copytree(converted_smollm2, tmp_path / "results" / "base_models" / DEMO_MODEL)
    write_eval(
        tmp_path / "results" / "eval",
        "biomed",
        DEMO_MODEL,
        "chat",
        "demo_knowledge_biomed_cloze",
        {"acc": 0.24, "acc_norm": 0.26},
    )
    result = snakemake(
        "tables", "-n", "--directory", str(tmp_path), "--configfile", str(config_file)
    )
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"table": 1, "tables": 1, "total": 2}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            "exp_biomed_smollm2_135m_instruct_chat",
            {"generate_demo_data": 1, "base_model": 1, "evaluate": 1},
        ),
        (
            "exp_finance_smollm2_135m_instruct_negcft",
            {
                "generate_demo_data": 1,
                "corpus": 1,
                "base_model": 1,
                "tokenize": 1,
                "train": 1,
                "evaluate": 2,
                "demo_finben": 1,
            },
        ),
        (
            "exp_biomed_smollm2_135m_instruct_autocft",
            {
                "generate_demo_data": 1,
                "corpus": 1,
                "base_model": 1,
                "autogen_prompts": 1,
                "tokenize": 1,
                "train": 1,
                "evaluate": 1,
            },
        ),
    ],
)
def test_named_experiment_target_plans_exactly_its_chain(target, expected):
    result = snakemake(target, "-n", "--forceall")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts.pop(target) == 1 and counts.pop("total") == sum(expected.values()) + 1
    assert counts == expected


def test_named_targets_are_listed():
    result = snakemake("--list-target-rules")
    names = set(result.stdout.split())
    assert {"tables", "all", "exp_biomed_smollm2_135m_instruct_cft"} <= names
    assert sum(name.startswith("exp_") for name in names) == 2 * 5
