"""Result tables: values equal the eval JSONs, the average rule, the join with the paper's
numbers, missing results, LaTeX, and what `snakemake tables` and the named experiment targets
plan."""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import REPO, job_counts, snakemake
from unit.test_tables import DEMO_MODEL, write_eval


def test_tables_target_plans_only_table_jobs_when_results_exist(tmp_path, converted_smollm2):
    """A working directory where the chat row of the biomed demo table is complete."""
    from cft.data.demo_data import run as generate_demo

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
        [1, 0, 0, 0] * 100,
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
            {"demo_data": 1, "base_model": 1, "evaluate": 1},
        ),
        (
            "exp_finance_smollm2_135m_instruct_negcft",
            {
                "demo_data": 1,
                "corpus": 1,
                "base_model": 1,
                "tokenize": 1,
                "train": 1,
                "evaluate": 1,
            },
        ),
        (
            "exp_biomed_smollm2_135m_instruct_autocft",
            {
                "demo_data": 1,
                "corpus": 1,
                "base_model": 1,
                "autogen": 1,
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
