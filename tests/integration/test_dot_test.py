"""The catalog's `.test/` run: `.test/config/config.yaml`, the demo's DAG at toy sizes, run
locally (not through SLURM) by the real snakemake CLI with the local profile, every stage and
every method, in a scratch working directory; then a dry run of the same finished folder plans
nothing."""

from __future__ import annotations

import json
import os

from conftest import BIN, REPO, job_counts, snakemake

from cft.core.methods import METHODS
from cft.core.settings import STAGES
from cft.core.yaml_files import load_yaml
from cft.synthetic import CONDITIONS

CONFIG = REPO / ".test" / "config" / "config.yaml"


def test_the_test_config_runs_every_stage_end_to_end(tmp_path):
    config = load_yaml(CONFIG.read_text())
    methods = config["grid"]["methods"]
    trained = [m for m in methods if METHODS[m].trains]
    args = ["--profile", str(REPO / "profiles" / "local"), "--cores", "2"]
    args += ["--directory", str(tmp_path), "--configfile", str(CONFIG)]
    env = {"CFT_VLLM_PYTHON": os.environ.get("CFT_VLLM_PYTHON", str(BIN / "python"))}
    result = snakemake(*args, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]

    counts = job_counts(result.stderr)
    synthetic = config["synthetic"]
    assert counts == {
        "demo_data": 1,
        "corpus": 1,
        "base_model": 1,
        "autogen": 1,
        "tokenize": len(trained),
        "export": 1,
        "train": len(trained),
        "evaluate": len(methods),
        "loss_figure": 1,
        "table": 1,
        "synthetic_pretrain": len(synthetic["seeds"]),
        "synthetic_finetune": len(CONDITIONS) * len(synthetic["seeds"]) * len(synthetic["tasks"]),
        "synthetic_summary": 1,
        "all": 1,
        "total": sum(counts.values()) - counts["total"],
    }
    # every job logged under its own rule's name (one name per stage)
    assert {p.name for p in (tmp_path / "logs").iterdir()} == set(counts) - {"all", "total"}
    assert set(counts) - {"all", "total"} <= set(STAGES)

    model = next(iter(config["models"]))
    table = json.loads(
        (tmp_path / "results" / "tables" / "biomed" / model / "table.json").read_text()
    )
    assert table["rows"] == [METHODS[m].label for m in methods]
    assert not table["missing"]
    for row in table["rows"]:
        score = table["ours"][f"{row}|demo_knowledge_biomed_cloze"]
        assert 0 <= score <= 100
    assert table["provenance"]["stage_digest"]

    again = snakemake(*args, "-n", env=env)
    assert again.returncode == 0, again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr
