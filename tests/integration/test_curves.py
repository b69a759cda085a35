"""Knowledge-acquisition curves: checkpoints at evenly spaced steps, each scored by lm-eval with
its interval, from the untrained model at 0 tokens to the last step."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_job

from cft.core.config import validate_config
from cft.data.demo_data import generate, write_jsonl
from cft.evaluation.harness import evaluate
from cft.evaluation.knowledge_curve import run
from cft.tables.figures import knowledge_figure
from cft.tables.uncertainty import read_outcomes, score
from cft.training.run import train

TASK = "demo_knowledge_biomed_cloze"


def test_curve_scores_each_checkpoint_from_zero_tokens(
    demo_config, tiny_model, tiny_data, tmp_path, monkeypatch
):
    _, questions = generate("biomed", 4, 3, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl", questions)
    monkeypatch.chdir(tmp_path)  # the demo task reads its questions relative to the cwd
    job = make_job(demo_config, tmp_path, tiny_model, tiny_data)
    config = validate_config(job.config)
    config["evaluation"]["curves"]["points"] = 3
    config["evaluation"]["confidence"]["bootstrap_iters"] = 200
    # The train job runs on two processes; the curve's scorer lives in the training process,
    # so the curve trains on one device of the job's node (same global batch).
    curve_config = copy.deepcopy(config)
    curve_config["training"]["resources"]["default"] = {"cpu_processes_per_node": 2}
    out = tmp_path / "curve.json"
    record = run(
        curve_config,
        "biomed",
        "smollm2-135m-instruct",
        "cft",
        7,
        tokenized_dir=tiny_data,
        base_model_dir=tiny_model,
        out_json=out,
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    points = record["points"]
    # 48 blocks / global batch 4 = 12 steps, a checkpoint every 4: steps 0, 4, 8, 12
    assert [p["step"] for p in points] == [0, 4, 8, 12]
    tokens = [p["tokens"] for p in points]
    assert tokens[0] == 0 and tokens == sorted(tokens) and len(set(tokens)) == 4
    assert tokens[1] == pytest.approx(tokens[-1] / 3, rel=0.1)  # non-padding tokens seen
    for point in points:
        assert point["questions"] == len(questions)
        assert point["low"] <= point["accuracy"] <= point["high"]
    assert record["seed"] == 7 and record["task"] == "demo_knowledge_biomed_cloze"
    assert record["provenance"]["backend"] == "cpu"  # scored where it trained
    # scoring between steps does not move the run: its end is the train stage's model
    job = replace(make_job(config, tmp_path / "plain", tiny_model, tiny_data), seed=7)
    train(job)
    results, _ = evaluate(config, TASK, Path(job.out_dir))
    samples = tmp_path / "plain.samples.jsonl"
    samples.write_text("".join(json.dumps(x, default=str) + "\n" for x in results["samples"][TASK]))
    outcomes = read_outcomes(samples, "acc")
    assert points[-1]["accuracy"] == pytest.approx(100 * score(outcomes)[0])
    assert points[-1]["margin"] == pytest.approx(score(outcomes, "margin")[0], rel=1e-6)
    knowledge_figure([out], "tiny", tmp_path / "c.png", tmp_path / "c.svg")
    assert (tmp_path / "c.png").stat().st_size > 10_000
