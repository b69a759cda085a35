"""The GPU check (bench/gpu_check.py) cannot rot: its --cpu-dry-run runs every step at toy size
on CPU, through the same code it runs on a GPU node, and the dtypes it reports are read off the
live modules (bf16 compute where bf16 is configured, fp32 or bf16 master weights as set)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import REPO

from cft.data.demo_data import generate, write_jsonl


def test_the_gpu_check_dry_run_measures_the_configured_precision(
    tmp_path, converted_smollm2, tiny_data
):
    questions = tmp_path / "questions.jsonl"
    write_jsonl(questions, generate("biomed", 4, 1, seed=0)[1])
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    script = str(REPO / "bench" / "gpu_check.py")
    sources = ["--tokenizer", str(converted_smollm2), "--tokenized", str(tiny_data)]
    subprocess.run(
        [sys.executable, script, "prepare", str(bundle), *sources, "--questions", str(questions)],
        check=True,
    )
    assert not list(bundle.rglob("*.safetensors")), "the bundle carries no weights"
    done = subprocess.run(
        [sys.executable, script, "run", "--bundle", str(bundle), "--out", str(out),
         "--cpu-dry-run"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    record = json.loads((out / "gpu_check.json").read_text())
    steps = record["steps"]
    failed = {name: step.get("error") for name, step in steps.items() if not step["ok"]}
    assert done.returncode == 0 and not failed, (failed, done.stdout[-3000:])
    assert list(steps) == ["environment", "mfu_mixed", "mfu_pure", "train", "evaluate"]
    mixed, pure = steps["mfu_mixed"]["dtypes"], steps["mfu_pure"]["dtypes"]
    assert mixed["compute"] == pure["compute"] == "bfloat16"
    assert mixed["master_weights"] == mixed["optimizer_state"] == "float32"
    assert pure["master_weights"] == pure["optimizer_state"] == "bfloat16"
    assert steps["mfu_mixed"]["achieved_flops_per_device"] > 0
    train = steps["train"]
    assert train["parallelism"] == "fsdp2" and train["precision"]["sharded_parameters"]
    assert train["precision"]["compute"] == train["precision"]["master_weights"] == "bfloat16"
    assert train["resumed_from"].endswith("checkpoint-3") and train["steps_after_resume"] == 3
    assert train["resume_max_abs_weight_difference"] == 0.0  # CPU: resume is exact
    assert steps["evaluate"]["different_answers"] == 0
    # what a device call brings back: the record, the log and the workers' own output
    assert {"gpu_check.json", "gpu_check.log", "train.log"} <= {p.name for p in out.iterdir()}
    shutil.rmtree(out / "work")
