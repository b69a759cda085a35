"""`make demo` ends by comparing its tables with the README's record of the precision it ran
in (scripts/update_docs.py --compare-demo): here on a results tree laid out as a finished
demo leaves it, holding the recorded bf16 run's own tables."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest
from conftest import REPO

SPEC = importlib.util.spec_from_file_location("update_docs", REPO / "scripts" / "update_docs.py")
update_docs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(update_docs)

RECORD = json.loads((REPO / "docs" / "demo_runs" / "bf16.json").read_text())


def finished_demo(root, tables: dict, trained: str = "bf16", scored: str = "bfloat16"):
    """results/ as a demo leaves it: each domain's table.json, a train record and an eval
    record naming the precision they ran in."""
    for domain, table in tables.items():
        folder = root / "tables" / domain / table["model"]
        folder.mkdir(parents=True)
        (folder / "table.json").write_text(json.dumps(table))
        model = root / "models" / domain / table["model"] / "cpt" / "seed1234"
        model.mkdir(parents=True)
        metrics = {"precision": {"chosen": trained}}
        (model / "train_metrics.json").write_text(json.dumps(metrics))
        record = root / "eval" / domain / table["model"] / "chat" / "task.json"
        record.parent.mkdir(parents=True)
        record.write_text(json.dumps({"lm_eval_arguments": {"dtype": scored}}))
    return root / "tables"


def test_the_recorded_run_equals_its_record(tmp_path, capsys):
    tables = finished_demo(tmp_path / "results", RECORD["tables"])
    assert update_docs.compare_demo(tables) == 0
    assert "equal the README's record: docs/demo_runs/bf16.json" in capsys.readouterr().out


def changed_tables() -> dict:
    tables = copy.deepcopy(RECORD["tables"])
    key = next(iter(tables["finance"]["intervals"]))
    tables["finance"]["intervals"][key]["value"] += 0.01
    return tables


def test_a_changed_number_fails_on_the_records_kind_of_cpu(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(update_docs, "cpu_model", lambda: RECORD["cpu"])
    tables = finished_demo(tmp_path / "results", changed_tables())
    assert update_docs.compare_demo(tables) == 1
    err = capsys.readouterr().err
    assert "differ from the README's record" in err and "in 1 number(s)" in err
    assert "finance/intervals/" in err and "a numerics change" in err


def test_on_another_kind_of_cpu_the_difference_is_shown_not_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(update_docs, "cpu_model", lambda: "AMD EPYC 9R14 (AVX2 only), 2 cores")
    tables = finished_demo(tmp_path / "results", changed_tables())
    assert update_docs.compare_demo(tables) == 0
    assert "of another kind than the record's" in capsys.readouterr().err


def test_a_run_is_compared_with_the_record_of_its_precision(tmp_path, capsys, monkeypatch):
    """bf16's numbers from an fp32 run: compared with fp32.json, so they differ."""
    fp32_record = json.loads((REPO / "docs" / "demo_runs" / "fp32.json").read_text())
    monkeypatch.setattr(update_docs, "cpu_model", lambda: fp32_record["cpu"])
    fp32 = finished_demo(tmp_path / "fp32" / "results", RECORD["tables"], "fp32", "float32")
    assert update_docs.compare_demo(fp32) == 1
    assert "(fp32) differ from the README's record docs/demo_runs/fp32.json" in (
        capsys.readouterr().err
    )
    mixed = finished_demo(tmp_path / "mixed" / "results", RECORD["tables"], "bf16", "float32")
    with pytest.raises(SystemExit, match="trained in bf16 and scored in float32"):
        update_docs.compare_demo(mixed)
