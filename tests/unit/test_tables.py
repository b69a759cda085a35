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
from conftest import REPO
from sklearn.metrics import f1_score

from cft.core.config import validate_config
from cft.core.grid import table_records
from cft.core.io import file_sha256
from cft.core.methods import label
from cft.core.paths import TABLE_FILES, eval_json, samples_path
from cft.core.settings import evaluation_settings_hash
from cft.tables.formats import to_latex, to_markdown
from cft.tables.table import (
    PAPER_TASKS,
    REFERENCE_FILE,
    TableError,
    build_table,
    load_reference,
    write_table,
)

DEMO_MODEL = "smollm2-135m-instruct"


def records(config, domain, model, root) -> list[Path]:
    """The records a table of (domain, model) is built from, as its rule declares them."""
    return [Path(path) for path in table_records(config, domain, model, str(root))]


def table_of(config, domain, model, root, reference=None):
    """The table built from every record its grid names under ``root``."""
    given = records(config, domain, model, root)
    return build_table(config, domain, model, given, reference or load_reference())


DEMO_CONFIG = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
DEMO_SEED = DEMO_CONFIG["seed"]


def write_eval(root: Path, domain, model, method, task, correct, seed=DEMO_SEED) -> dict:
    """An eval record and its per-sample log, shaped as cft.evaluation.evaluate writes them, from
    the 0/1 outcome of each question (FinBen tasks: a prediction among 3 labels, right or not);
    returns the metrics. Questions 2k and 2k+1 ask the same fact (the demo's clusters)."""
    seed = None if method == "chat" else seed
    path = Path(eval_json(domain, model, method, seed, task, str(root)))
    path.parent.mkdir(parents=True, exist_ok=True)
    finben = "finben" in task
    samples, pairs = [], []
    for doc_id, right in enumerate(correct):
        gold = doc_id % 3
        pred = gold if right else (gold + 1) % 3
        pairs.append((gold, pred))
        sample = {
            "doc_id": doc_id,
            "doc": {"fact": f"fact{doc_id // 2}"},
            "target": gold,
            "acc": float(right),
            "filtered_resps": [[-1.0 if i == pred else -2.0, False] for i in range(3)],
        }
        if finben:
            sample |= {"weighted_f1": [gold, pred], "macro_f1": [gold, pred]}
        samples.append(sample)
    metrics = {"acc": sum(correct) / len(correct)}
    if finben:
        gold, pred = zip(*pairs, strict=True)
        metrics["weighted_f1"] = f1_score(gold, pred, average="weighted")
    record = {
        "domain": domain,
        "model": model,
        "method": method,
        "training_seed": seed,
        "task": task,
        "metrics": metrics,
        "n_samples": {"original": len(correct), "effective": len(correct)},
        "lm_eval_arguments": {"backend": "hf"},
        # made with the demo config's evaluation settings, beside this very log
        "settings_hash": evaluation_settings_hash(DEMO_CONFIG, model, task),
        "provenance": {"config_hash": "x"},
    }
    samples_path(path).write_text("".join(json.dumps(x) + "\n" for x in samples))
    record["samples_sha256"] = file_sha256(samples_path(path))
    path.write_text(json.dumps(record))
    return metrics


# Two finance tasks of two kinds (accuracy, FinBen's weighted F1): the demo's suite has only
# the first, these tests need a table with several columns and an Average.
FINANCE_TASKS = ("demo_knowledge_finance_cloze", "demo_finben_fiqasa")


@pytest.fixture
def config(demo_config):
    demo_config["evaluation"]["suites"]["finance"] = list(FINANCE_TASKS)
    return validate_config(demo_config)


def fill_finance(root: Path, methods, *, skip=()) -> dict:
    """Method i answers the first 8 + 4·i of 40 questions right (task j: one more)."""
    values = {}
    for i, method in enumerate(methods):
        for j, task in enumerate(FINANCE_TASKS):
            if (method, task) in skip:
                continue
            right = 8 + 4 * i + j
            correct = [1] * right + [0] * (40 - right)
            values[(method, task)] = write_eval(root, "finance", DEMO_MODEL, method, task, correct)
    return values


def one_chat_record(config: dict, tmp_path: Path) -> tuple[str, Path, dict]:
    """A table of the untrained row alone, with its one eval record written: (task, the
    record's path, the record)."""
    task = "demo_knowledge_biomed_cloze"
    config["grid"]["methods"] = ["chat"]
    write_eval(tmp_path, "biomed", DEMO_MODEL, "chat", task, [1, 0] * 20)
    path = Path(eval_json("biomed", DEMO_MODEL, "chat", None, task, str(tmp_path)))
    return task, path, json.loads(path.read_text())


def test_table_values_equal_the_eval_jsons(config, tmp_path):
    methods = config["grid"]["methods"]
    values = fill_finance(tmp_path, methods)
    table = table_of(config, "finance", DEMO_MODEL, tmp_path)
    assert [row.label for row in table.rows] == [label(m) for m in methods]
    for (method, task), metrics in values.items():
        metric = "weighted_f1" if "finben" in task else "acc"
        assert table.ours[(label(method), task)] == pytest.approx(100 * metrics[metric])
    given = records(config, "finance", DEMO_MODEL, tmp_path)
    write_table(config, "finance", DEMO_MODEL, records=given, out_dir=tmp_path / "out")
    out = {kind: tmp_path / "out" / name for kind, name in TABLE_FILES.items()}
    with out["csv"].open() as handle:
        rows = {(r["row"], r["task"], r["metric"]): r for r in csv.DictReader(handle)}
    for (method, task), metrics in values.items():
        metric = "weighted_f1" if "finben" in task else "acc"
        cell = rows[(label(method), task, metric)]
        assert float(cell["ours"]) == pytest.approx(100 * metrics[metric], abs=1e-4)
        assert float(cell["ci_low"]) <= float(cell["ours"]) <= float(cell["ci_high"])
    assert out["png"].stat().st_size > 10_000 and out["svg"].read_text().startswith("<?xml")


def test_table_files_are_published_together(config, tmp_path, monkeypatch):
    from cft.tables import table as tables

    fill_finance(tmp_path / "eval", config["grid"]["methods"])
    out = tmp_path / "table"
    given = records(config, "finance", "smollm2-135m-instruct", tmp_path / "eval")
    tables.write_table(config, "finance", "smollm2-135m-instruct", records=given, out_dir=out)
    old = {name: (out / name).read_bytes() for name in TABLE_FILES.values()}
    config["evaluation"]["confidence"]["seed"] = 7  # other intervals this time

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the bar chart")

    monkeypatch.setattr(tables, "bar_chart", killed)
    with pytest.raises(KeyboardInterrupt):
        tables.write_table(config, "finance", "smollm2-135m-instruct", records=given, out_dir=out)
    assert {name: (out / name).read_bytes() for name in TABLE_FILES.values()} == old


def test_table_json_intervals_and_paired_differences_on_known_outcomes(config, tmp_path):
    """Chat answers 10 of 40 facts (80 questions, two wordings each); CPT answers the same 10
    and 20 more; CFT answers exactly what CPT answers. Known results: CPT − Chat = +50 points
    on every resample that draws any of the 20 facts (paired: never below 0), CFT − CPT = 0
    exactly, and Chat's interval is the bootstrap of a 25% share of 40 facts (±13.4 points
    by the normal approximation)."""
    config["grid"]["methods"] = ["chat", "cpt", "cft"]
    config["evaluation"]["suites"]["biomed"] = ["demo_knowledge_biomed_cloze"]
    config["evaluation"]["confidence"]["resample"] = "facts"
    task = "demo_knowledge_biomed_cloze"
    chat = [1] * 20 + [0] * 60
    cpt = [1] * 60 + [0] * 20
    for method, correct in (("chat", chat), ("cpt", cpt), ("cft", cpt)):
        write_eval(tmp_path, "biomed", DEMO_MODEL, method, task, correct)
    given = records(config, "biomed", DEMO_MODEL, tmp_path)
    write_table(config, "biomed", DEMO_MODEL, records=given, out_dir=tmp_path / "out")
    out = {kind: tmp_path / "out" / name for kind, name in TABLE_FILES.items()}
    record = json.loads(out["json"].read_text())
    chat_cell = record["intervals"][f"Chat|{task}"]
    assert chat_cell["value"] == 25.0
    assert (chat_cell["high"] - chat_cell["low"]) / 2 == pytest.approx(13.4, abs=1.5)
    vs_cpt = record["paired"]["Chat (CPT)"]
    assert vs_cpt[f"Chat (CFT)|{task}"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert vs_cpt[f"Chat|{task}"]["value"] == -50.0 and vs_cpt[f"Chat|{task}"]["high"] < -30
    vs_chat = record["paired"]["Chat"][f"Chat (CPT)|{task}"]
    assert vs_chat["value"] == 50.0 and 30 < vs_chat["low"] < 50 < vs_chat["high"] < 70
    # the average column of a one-task table is the task itself
    assert record["intervals"]["Chat|average"] == chat_cell
    # margins: right answers are +1 nat ahead of the best distractor, wrong ones 1 nat behind
    assert record["margins"][f"Chat|{task}"]["value"] == pytest.approx(0.25 - 0.75)
    assert record["bootstrap"] == {
        "iterations": 2000,
        "seed": 0,
        "level": 0.95,
        "resample": "facts",
    }
    markdown = out["md"].read_text()
    assert "**Paired difference to Chat (CPT)**" in markdown and "+0.0 [0.0, 0.0]" in markdown
    assert "percentile bootstrap interval over the facts" in markdown


def test_rows_with_several_training_seeds_average_and_resample_them(config, tmp_path):
    task = "demo_knowledge_biomed_cloze"
    config["grid"]["methods"] = ["chat", "cpt"]
    config["training"]["seeds"] = [1, 2]
    config["evaluation"]["suites"]["biomed"] = [task]
    write_eval(tmp_path, "biomed", DEMO_MODEL, "chat", task, [1] * 20 + [0] * 60)
    write_eval(tmp_path, "biomed", DEMO_MODEL, "cpt", task, [1] * 40 + [0] * 40, seed=1)
    write_eval(tmp_path, "biomed", DEMO_MODEL, "cpt", task, [1] * 60 + [0] * 20, seed=2)
    table = table_of(config, "biomed", DEMO_MODEL, tmp_path)
    assert table.ours[("Chat (CPT)", task)] == pytest.approx((50 + 75) / 2)
    assert table.seeds == {"Chat": 1, "Chat (CPT)": 2}
    # resampling the two runs (50 and 75) puts a quarter of the replicates near each
    cpt = table.intervals[("Chat (CPT)", task)]
    assert cpt.low < 52 and cpt.high > 73
    assert "training seeds" in to_markdown(table)
    # a row lacks its value until every seed's run is evaluated
    seed2 = Path(eval_json("biomed", DEMO_MODEL, "cpt", 2, task, str(tmp_path)))
    seed2.unlink()
    table = table_of(config, "biomed", DEMO_MODEL, tmp_path)
    assert ("Chat (CPT)", task) not in table.ours and str(seed2) in table.missing


def test_a_record_for_another_cell_or_a_stale_sample_log_is_refused(config, tmp_path):
    task = "demo_knowledge_finance_cloze"
    fill_finance(tmp_path, ["chat", "cpt"])
    cpt = Path(eval_json("finance", DEMO_MODEL, "cpt", DEMO_SEED, task, str(tmp_path)))
    record = json.loads(cpt.read_text())
    misplaced = Path(eval_json("finance", DEMO_MODEL, "cft", DEMO_SEED, task, str(tmp_path)))
    misplaced.parent.mkdir(parents=True)
    misplaced.write_text(json.dumps(record))
    samples_path(misplaced).write_text(samples_path(cpt).read_text())
    with pytest.raises(TableError, match=r"two records of the cell .*'method': 'cpt'"):
        table_of(config, "finance", DEMO_MODEL, tmp_path)
    misplaced.unlink()
    record["metrics"]["acc"] = 0.99
    cpt.write_text(json.dumps(record))
    with pytest.raises(TableError, match="per-sample log gives acc"):
        table_of(config, "finance", DEMO_MODEL, tmp_path)


def test_the_table_reads_only_the_records_it_is_given(config, tmp_path):
    """The rule gives the table its declared inputs: a record on disk that it was not given is
    never read (its cells are missing), and a given record of another table is refused."""
    fill_finance(tmp_path, ["chat", "cpt"])
    given = [p for p in records(config, "finance", DEMO_MODEL, tmp_path) if "/chat/" in str(p)]
    table = build_table(config, "finance", DEMO_MODEL, given, load_reference())
    assert ("Chat", "demo_finben_fiqasa") in table.ours
    assert not [key for key in table.ours if key[0] == "Chat (CPT)"]  # on disk, not given
    assert table.missing == []  # nothing given is missing; nothing else was looked for
    task = "demo_knowledge_biomed_cloze"
    write_eval(tmp_path, "biomed", DEMO_MODEL, "chat", task, [True, False])
    biomed = Path(eval_json("biomed", DEMO_MODEL, "chat", None, task, str(tmp_path)))
    with pytest.raises(TableError, match="not a cell of the finance/"):
        build_table(config, "finance", DEMO_MODEL, [*given, biomed], load_reference())


def test_average_is_the_unweighted_mean_and_needs_every_task(config, tmp_path):
    fill_finance(tmp_path, ["chat", "cpt"], skip={("cpt", "demo_finben_fiqasa")})
    table = table_of(config, "finance", DEMO_MODEL, tmp_path)
    chat = [table.ours[("Chat", t)] for t in table.tasks]
    assert table.average(table.ours, "Chat") == pytest.approx(sum(chat) / len(chat))
    assert table.average(table.ours, "Chat (CPT)") is None  # never an average of what exists


def test_missing_results_are_dashes_with_a_footnote(config, tmp_path):
    fill_finance(tmp_path, ["chat"])
    table = table_of(config, "finance", DEMO_MODEL, tmp_path)
    markdown = to_markdown(table)
    missing = Path(
        eval_json("finance", DEMO_MODEL, "cft", DEMO_SEED, "demo_finben_fiqasa", str(tmp_path))
    )
    assert str(missing) in table.missing and str(missing) in markdown
    assert str(samples_path(missing)) in table.missing
    cft_line = next(line for line in markdown.splitlines() if line.startswith("| Chat (CFT) |"))
    assert cft_line.count("—") == len(table.columns())
    assert "**" in next(line for line in markdown.splitlines() if line.startswith("| Chat |"))


def test_every_paper_cell_lands_in_its_row_and_column(paper_config, tmp_path):
    config = validate_config(paper_config)
    reference = load_reference()
    for domain in ("biomed", "finance"):
        for model in config["grid"]["models"]:
            table = table_of(config, domain, model, tmp_path, reference)
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
    table = table_of(config, "biomed", "llama-2-7b-chat", tmp_path, reference)
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
    table = table_of(config, "finance", DEMO_MODEL, tmp_path)
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


def test_a_record_made_with_other_evaluation_settings_is_refused(config, tmp_path):
    """An evaluation forced with `limit: 5` must not pass as the configured evaluation."""
    from cft.core.settings import evaluation_settings_hash

    task, path, record = one_chat_record(config, tmp_path)
    limited = validate_config({**config, "evaluation": {**config["evaluation"], "limit": 5}})
    for made_with, refused in ((config, False), (limited, True)):
        record["settings_hash"] = evaluation_settings_hash(made_with, DEMO_MODEL, task)
        record["lm_eval_arguments"]["limit"] = made_with["evaluation"]["limit"]
        path.write_text(json.dumps(record))
        if refused:
            expected = r"other evaluation settings .*evaluation\.limit = 5"
            with pytest.raises(TableError, match=expected):
                table_of(config, "biomed", DEMO_MODEL, tmp_path)
        else:
            assert table_of(config, "biomed", DEMO_MODEL, tmp_path).ours


@pytest.mark.parametrize("field", ["settings_hash", "samples_sha256", "metrics"])
def test_a_record_without_a_checked_field_is_refused_naming_it(config, tmp_path, field):
    """A missing field is a refusal, not a skipped check: a per-sample log shuffled across
    questions (same mean) was accepted when the record had no samples_sha256."""
    _, path, record = one_chat_record(config, tmp_path)
    del record[field]
    path.write_text(json.dumps(record))
    with pytest.raises(TableError, match=rf"lacks \['{field}'\]"):
        table_of(config, "biomed", DEMO_MODEL, tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [("[1, 2]", "a JSON list, not an object"), ('{"metrics": {}}', "naming its cell")],
)
def test_malformed_eval_records_are_refused_with_a_message(config, tmp_path, content, message):
    _, path, record = one_chat_record(config, tmp_path)
    path.write_text(content)
    with pytest.raises(TableError, match=message):
        table_of(config, "biomed", DEMO_MODEL, tmp_path)
    record["metrics"] = {"acc_norm": 0.5}  # the reported metric is absent
    path.write_text(json.dumps(record))
    with pytest.raises(TableError, match="metrics have no 'acc'"):
        table_of(config, "biomed", DEMO_MODEL, tmp_path)


def test_a_sample_log_other_than_the_records_own_is_refused(config, tmp_path):
    _, path, record = one_chat_record(config, tmp_path)
    record["samples_sha256"] = file_sha256(samples_path(path))
    path.write_text(json.dumps(record))
    assert table_of(config, "biomed", DEMO_MODEL, tmp_path).ours
    record["samples_sha256"] = "0" * 64  # written with another log than the one beside it
    path.write_text(json.dumps(record))
    with pytest.raises(TableError, match="not the per-sample log"):
        table_of(config, "biomed", DEMO_MODEL, tmp_path)


def test_rows_the_paper_never_reported_are_marked_as_extensions(paper_config, tmp_path):
    """13B finance: the paper reports Chat, CPT and CFT only; -CFT, TextAdaptCFT and the AdaptLLM
    finance baseline there are the project's extensions, marked in the Markdown."""
    from cft.tables.table import reported_rows

    validate_config(paper_config)
    table = build_table(paper_config, "finance", "llama-2-13b-chat", [], load_reference())
    assert table.extensions == [label("negcft"), label("autocft"), "AdaptLLM"]
    markdown = to_markdown(table)
    assert f"| {label('negcft')} † |" in markdown and "the project's extension" in markdown
    assert f"| {label('cft')} |" in markdown
    rows = reported_rows(paper_config, load_reference())
    assert ("finance", "llama-2-13b-chat", "negcft") not in rows
    assert ("biomed", "llama-2-7b-chat", "autocft") in rows
    assert ("biomed", "adaptllm-medicine-chat", "chat") in rows
    assert ("finance", "adaptllm-finance-chat", "chat") not in rows  # not in the paper
