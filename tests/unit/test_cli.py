"""The stages' command lines: a wrong argument or a damaged input is named, with what was
expected, before any work where possible."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from cft.core.config import ConfigError
from cft.core.io import read_json


def cli(*args: str):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_an_unknown_model_is_named():
    result = cli("cft.data.base_model", "--model", "llama-9", "--out-dir", "y")
    assert result.returncode != 0
    assert "--model 'llama-9' is not defined under 'models'" in result.stderr


def test_a_missing_model_folder_is_named_not_taken_for_a_hub_repo(tmp_path):
    missing = tmp_path / "no" / "model"
    result = cli("cft.evaluation.evaluate", "--domain", "biomed", "--model",
                 "smollm2-135m-instruct", "--method", "chat", "--task",
                 "demo_knowledge_biomed_cloze", "--model-dir", str(missing),
                 "--out", str(tmp_path / "e.json"))  # fmt: skip
    assert result.returncode != 0
    assert f"--model-dir {missing}: not a model folder" in result.stderr
    assert "Repo id" not in result.stderr


def test_a_truncated_json_record_is_named(tmp_path):
    record = tmp_path / "stats.json"
    record.write_text('{"fingerprint": "ab')
    with pytest.raises(ValueError, match=rf"{record}: not valid JSON .* was it truncated"):
        read_json(record)


def test_stage_config_is_the_validated_config_with_checked_arguments():
    import argparse

    from cft.core.cli import stage_config

    args = argparse.Namespace(config="config/config.yaml", domain="biomed", model=None)
    assert stage_config(args)["corpus"]["on_invalid_utf8"] == "error"  # defaults filled in
    with pytest.raises(ConfigError, match="--model 'x' is not defined"):
        stage_config(argparse.Namespace(config="config/config.yaml", domain="biomed", model="x"))


def test_the_training_cli_names_an_unknown_method_and_a_missing_base_model(tmp_path):
    """Before, both surfaced later as a missing tokenized folder or a hub lookup."""
    train = ("cft.training", "--domain", "biomed", "--model", "smollm2-135m-instruct")
    result = cli(*train, "--method", "cftt")
    assert result.returncode == 2
    assert "--method 'cftt' is not a trained method of grid.methods" in result.stderr
    assert "trained: ['cpt', 'cft'" in result.stderr
    missing = tmp_path / "no" / "model"
    result = cli(*train, "--method", "cft", "--base-model", str(missing))
    assert result.returncode != 0
    assert f"--base-model {missing}: not a model folder" in result.stderr


def test_a_tokenized_folder_without_its_stats_record_is_named(tmp_path):
    from cft.training import TrainingError
    from cft.training.data import load_tokenized

    (tmp_path / "dataset_dict.json").write_text('{"splits": ["train"]}')
    with pytest.raises(TrainingError, match=rf"{tmp_path}: no stats.json, so not a folder"):
        load_tokenized(str(tmp_path))


def test_the_pipelines_own_errors_are_a_message_not_a_traceback():
    result = cli("cft.packing.export", "--domain", "law", "--out", "y.jsonl")
    assert result.returncode == 1
    assert "failed: --domain 'law' is not defined" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_checks_both_its_outputs_before_any_work(tmp_path):
    from unit.test_io import other_data

    out = tmp_path / "gemini_cft.jsonl"
    stats = tmp_path / "gemini_cft.stats.json"
    other_data(stats)
    missing_corpus = tmp_path / "absent.parquet"  # read only after the outputs are checked
    result = cli("cft.packing.export", "--domain", "biomed", "--corpus", str(missing_corpus),
                 "--out", str(out))  # fmt: skip
    assert result.returncode != 0
    assert f"{stats}: expected an output file path, but it is a folder" in result.stderr
    assert not out.exists() and (stats / "notes.txt").exists()


def test_base_model_refuses_a_foreign_folder_before_converting(tmp_path):
    from unit.test_io import other_data

    target = tmp_path / "smollm2"
    before = other_data(target)
    result = cli(
        "cft.data.base_model", "--model", "smollm2-135m-instruct", "--out-dir", str(target)
    )
    assert result.returncode != 0
    assert f"{target}: refusing to replace a folder that holds files" in result.stderr
    assert "converting packaged GGUF" not in result.stderr  # refused before the conversion
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


def test_errors_defined_by_the_stage_run_as_main_are_a_message_not_a_traceback(tmp_path):
    """Under ``python -m cft.<stage>`` the stage's own error classes live in ``__main__``: they
    are still the pipeline's errors, logged as ``cft.<stage> failed: <message>`` alone."""
    from cft.core.paths import eval_json

    record = tmp_path / eval_json("biomed", "smollm2-135m-instruct", "chat", None,
                                  "demo_knowledge_biomed_cloze", "evals")  # fmt: skip
    record.parent.mkdir(parents=True)
    record.write_text("[1, 2]")
    record.with_suffix(".samples.jsonl").write_text("")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # never loaded: the task is checked first
    runs = {
        "cft.data.corpus": ("--domain", "biomed", "--raw", str(tmp_path), "--out-dir",
                       str(tmp_path / "corpus")),
        "cft.tables.table": ("--domain", "biomed", "--model", "smollm2-135m-instruct",
                             "--eval-root", str(tmp_path / "evals"), "--out-root",
                             str(tmp_path / "tables")),
        "cft.evaluation.evaluate": ("--domain", "biomed", "--model", "smollm2-135m-instruct",
                                    "--method", "chat", "--task", "demo_knowledge_biomed_clze",
                                    "--model-dir", str(model), "--out", str(tmp_path / "e.json")),
    }  # fmt: skip
    expected = {
        "cft.data.corpus": "documents.jsonl: demo documents not found",
        "cft.tables.table": f"{record}: not an eval record (a JSON list",
        "cft.evaluation.evaluate": "unknown lm-eval task 'demo_knowledge_biomed_clze'",
    }
    for stage, args in runs.items():
        result = cli(stage, *args)
        assert result.returncode == 1, result.stderr
        assert f"{stage} failed: " in result.stderr and expected[stage] in result.stderr
        assert "Traceback" not in result.stderr, result.stderr


def test_every_error_class_of_the_package_is_a_cft_error():
    """One base for the errors raised on purpose: what the logging prints as a message."""
    import ast
    import importlib

    from cft.core.errors import CftError
    from unit.test_layout import modules

    classes = []
    for module, path in modules().items():
        if path.name == "__main__.py":  # importing it would run the command line
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                classes.append(getattr(importlib.import_module(module), node.name))
    assert len(classes) >= 17
    yaml_parse_errors = {"DuplicateKeyError"}  # raised inside PyYAML, reported by its readers
    assert [c for c in classes if not issubclass(c, CftError)
            and c.__name__ not in yaml_parse_errors] == []  # fmt: skip
