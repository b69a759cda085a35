"""Evaluation: the shipped lm-eval task YAMLs, the FinBen tasks end to end on local copies laid
out like the hub (weighted F1 equal to scikit-learn's), the result JSON, and the errors for
unknown tasks and for data missing offline."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, tiny_sliding_model
from sklearn.metrics import f1_score

from cft.core.config import validate_config
from cft.core.fingerprints import ModelFilesError
from cft.core.io import file_sha256, write_json
from cft.evaluation import EvaluationError
from cft.evaluation import evaluate as evaluation
from cft.evaluation.evaluate import run
from cft.evaluation.harness import evaluate
from cft.evaluation.task_folders import TASKS_DIR
from cft.evaluation.task_index import check_task, task_manager
from cft.evaluation.weights import check_weights

FINBEN = ["finben_fiqasa", "finben_causal20", "finben_multifin"]


@pytest.fixture(scope="module")
def manager():
    return task_manager()


@pytest.fixture
def eval_config(demo_config):
    demo_config["evaluation"]["batch_size"] = 8
    demo_config["evaluation"]["dtype"] = "float32"
    return validate_config(demo_config)


def shipped_tasks() -> list[str]:
    from cft.evaluation.task_folders import task_files

    return list(task_files())


def _copy_with_weights(tiny_model, folder, change):
    """A copy of the tiny model whose safetensors tensors went through ``change``."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    save_file({name: change(tensor) for name, tensor in tensors.items()}, weights,
              metadata={"format": "pt"})  # fmt: skip
    return folder


def test_a_task_is_indexed_from_its_folders_as_from_the_whole_harness(manager):
    """Each evaluation job indexes only the lm-eval folders that mention its task: the same
    entries (config, YAML path, tags) as lm-eval's full index, at a tenth of its size."""
    for name in ("mmlu_anatomy", "medqa_4options", "finben_fiqasa", "demo_knowledge_biomed"):
        narrow = task_manager(name)
        assert len(narrow.all_tasks) < len(manager.all_tasks) / 10
        assert narrow.task_index[name] == manager.task_index[name], name
    # a group is built from tasks of other folders: such names get the full index
    assert len(task_manager("mmlu").all_tasks) == len(manager.all_tasks)
    assert len(task_manager("no_such_task").all_tasks) == len(manager.all_tasks)


def test_every_shipped_task_yaml_loads(manager):
    names = shipped_tasks()
    assert set(FINBEN) <= set(names) and "demo_knowledge_biomed" in names
    assert "demo_knowledge_finance_cloze" in names
    for name in names:
        assert name in manager.all_tasks, name
    # lm-eval's own tasks of the paper's medical suite are there too
    for name in ("mmlu_anatomy", "mmlu_professional_medicine", "medqa_4options"):
        assert name in manager.all_tasks


def test_each_tasks_local_data_come_from_its_own_yaml(manager):
    from cft.core import paths
    from cft.evaluation import task_folders

    for name in shipped_tasks():  # lm-eval's own reading of the YAML, includes merged
        config = manager.task_index[name].cfg
        data_files = (config.get("dataset_kwargs") or {}).get("data_files") or {}
        named = [config.get("dataset_path"), *data_files.values()]
        written = [p for p in named if p and p.startswith(f"{paths.RESULTS}/")]
        assert task_folders.local_data(name) == written, name
    biomed = paths.demo_file("biomed", "questions.jsonl")
    assert task_folders.local_data("demo_knowledge_biomed_cloze") == [biomed]
    fiqasa = paths.finben_demo_set("flare-fiqasa")
    assert task_folders.local_data("demo_finben_fiqasa") == [fiqasa]
    for hub_task in ("finben_fiqasa", "mmlu_anatomy", "medqa_4options"):
        assert task_folders.local_data(hub_task) == []
    # the held-out text names no data of its own: it reads its domain's corpus
    assert task_folders.local_data("heldout_text") == []


def test_each_suite_is_an_lm_eval_group_of_its_folders_tasks(manager):
    import yaml

    groups = {}
    for path in sorted(TASKS_DIR.rglob("_*.yaml")):
        spec = yaml.safe_load(path.read_text())
        groups[spec["group"]] = spec["task"]
        assert set(spec["task"]) <= {p.stem for p in path.parent.glob("*.yaml")}, path
    assert set(groups) == {
        "finben",
        "finben_generative",
        "demo_biomed",
        "demo_finance",
        "demo_finben_generative",
    }
    assert set(groups) <= set(manager.all_groups)  # lm-eval reads them as groups
    from cft.evaluation.task_folders import corpus_split

    grouped = [task for tasks in groups.values() for task in tasks]
    # every task in exactly one group, but the held-out text, which joins any domain's suite
    standalone = [task for task in shipped_tasks() if corpus_split(task)]
    assert standalone == ["heldout_text"]
    assert sorted(grouped + standalone) == sorted(shipped_tasks())
    assert not set(groups) & set(manager.all_tags)  # no tag of the same name to clash


def test_unknown_task_is_an_error_with_a_suggestion(manager):
    with pytest.raises(
        EvaluationError, match=r"unknown lm-eval task 'finben_fiqsa'.*finben_fiqasa"
    ):
        check_task("finben_fiqsa", manager)


@pytest.mark.parametrize("task", FINBEN)
def test_finben_task_end_to_end_weighted_f1_matches_sklearn(
    task, eval_config, tiny_model, finben_copies
):
    results, settings = evaluate(eval_config, f"demo_{task}", tiny_model, device="cpu")
    metrics = results["results"][f"demo_{task}"]
    samples = results["samples"][f"demo_{task}"]
    hub_name = {
        "finben_fiqasa": "flare-fiqasa",
        "finben_causal20": "flare-causal20-sc",
        "finben_multifin": "flare-multifin-en",
    }[task]
    assert len(samples) == finben_copies[hub_name]["test"]  # the test split is scored
    gold = [s["doc"]["gold"] for s in samples]
    pred = [int(np.argmax([r[0] for r in s["filtered_resps"]])) for s in samples]
    assert metrics["weighted_f1,none"] == pytest.approx(f1_score(gold, pred, average="weighted"))
    labels = sorted(set(gold))  # FinBen's F1 is over the labels that occur as gold
    assert metrics["macro_f1,none"] == pytest.approx(
        f1_score(gold, pred, average="macro", labels=labels)
    )
    assert metrics["acc,none"] == pytest.approx(np.mean(np.array(gold) == np.array(pred)))
    assert settings["bootstrap_iters"] == 0 and settings["backend"] == "hf"


def test_finben_generative_protocol_end_to_end(eval_config, tiny_model, finben_copies, tmp_path):
    """evaluation.finben.protocol: generative runs the suite task's generative variant through
    lm-eval (greedy generation, PIXIU's parse), the record carries MCC and the missing rate, and
    the table JSON reports them with intervals beside the weighted F1."""
    from unit.test_finben import sklearn_as_finben, utils

    from cft.core.paths import eval_json, samples_path
    from cft.evaluation import task_folders
    from cft.tables.table import write_table
    from cft.tables.uncertainty import PAIR_METRICS

    eval_config["evaluation"]["finben"]["protocol"] = "generative"
    eval_config["grid"]["methods"] = ["chat"]
    eval_config["evaluation"]["suites"]["finance"] = ["demo_finben_fiqasa"]
    eval_config["evaluation"]["confidence"]["bootstrap_iters"] = 200
    out = Path(eval_json("finance", "tiny", "chat", None, "demo_finben_fiqasa", str(tmp_path)))
    eval_config["models"]["tiny"] = {"source": "local", "path": str(tiny_model)}
    eval_config["grid"]["models"] = ["tiny"]
    record = run(eval_config, "finance", "tiny", "chat", "demo_finben_fiqasa",
                 model_dir=tiny_model, out_json=out)  # fmt: skip
    assert record["lm_eval_task"] == "demo_finben_fiqasa_generative"
    samples = [json.loads(line) for line in samples_path(out).read_text().splitlines()]
    assert len(samples) == finben_copies["flare-fiqasa"]["test"]
    gold = [s["doc"]["gold"] for s in samples]
    pred = [utils.parse_choice(s["filtered_resps"][0], s["doc"]["choices"]) for s in samples]
    metrics = record["metrics"]
    for metric in PAIR_METRICS:
        assert metrics[metric] == pytest.approx(sklearn_as_finben(metric, gold, pred))
    assert metrics["missing"] == pytest.approx(np.mean(np.array(pred) == utils.MISSING))
    assert metrics["acc"] == pytest.approx(np.mean(np.array(pred) == np.array(gold)))

    table_dir = tmp_path / "table"
    write_table(eval_config, "finance", "tiny", records=[out], out_dir=table_dir)
    table = json.loads((table_dir / "table.json").read_text())
    cell = table["secondary"]["Chat|demo_finben_fiqasa"]
    assert set(cell) == set(task_folders.secondary_metrics("demo_finben_fiqasa_generative"))
    for metric in ("mcc", "missing"):
        assert cell[metric]["value"] == pytest.approx(100 * metrics[metric])
        assert cell[metric]["low"] <= cell[metric]["value"] <= cell[metric]["high"]


PREAMBLE_REPLY = "Let me think about it.\n\nThe sentiment is positive."


def preamble_model(tiny_model, queries: list[str], folder: Path) -> Path:
    """The tiny model trained until it answers every query as a chat model often does: a
    preamble, a blank line, then the label (PREAMBLE_REPLY and its end of sequence)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cft.core.fingerprints import record_fingerprint

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    reply = tokenizer(PREAMBLE_REPLY, add_special_tokens=False).input_ids
    reply += [tokenizer.eos_token_id]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    rows = [tokenizer(q, add_special_tokens=False).input_ids + reply for q in queries]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.eos_token_id] * (width - len(r)) for r in rows])
    # the loss on the reply only, and the vocabulary-wide logits computed there only
    rows_at, positions = zip(
        *[(i, p) for i, r in enumerate(rows) for p in range(len(r) - len(reply) - 1, len(r) - 1)],
        strict=True,
    )
    targets = ids[rows_at, [p + 1 for p in positions]]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        hidden = model.model(input_ids=ids).last_hidden_state[rows_at, positions]
        loss = torch.nn.functional.cross_entropy(model.lm_head(hidden), targets)
        if loss.item() < 1e-3:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_fingerprint(folder)
    return folder


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_finben_generation_runs_past_a_blank_line_to_the_label(
    eval_config, tiny_model, finben_copies, tmp_path, dtype
):
    """PIXIU generates to the end of sequence (``until: None``): a reply whose label follows a
    preamble and a blank line is scored by its label. lm-eval 0.4's default stop, a blank line,
    would cut the reply to its preamble and score every answer missing. The greedy reply is
    the same with the weights in either dtype (CPUs differ in which one ``native`` picks)."""
    import pandas as pd
    from unit.test_finben import utils

    from cft.core.paths import samples_path

    task = "demo_finben_fiqasa_generative"
    loaded = task_manager(task).load(task)["tasks"][task]
    assert loaded.config.generation_kwargs["until"] == []  # only the EOS token stops it
    test_split = next((tmp_path / "results/demo_data/finben/flare-fiqasa").rglob("test-*"))
    docs = pd.read_parquet(test_split)
    model_dir = preamble_model(tiny_model, list(docs["query"]), tmp_path / "preamble")

    eval_config["evaluation"]["finben"]["protocol"] = "generative"
    eval_config["evaluation"]["dtype"] = dtype
    out = tmp_path / "record.json"
    record = run(eval_config, "finance", "tiny", "chat", "demo_finben_fiqasa",
                 model_dir=model_dir, out_json=out)  # fmt: skip
    samples = [json.loads(line) for line in samples_path(out).read_text().splitlines()]
    assert [s["filtered_resps"][0].strip() for s in samples] == [PREAMBLE_REPLY] * len(docs)
    positive = [list(s["doc"]["choices"]).index("positive") for s in samples]
    assert [utils.parse_choice(s["filtered_resps"][0], s["doc"]["choices"]) for s in samples] == (
        positive
    )
    gold = np.array([s["doc"]["gold"] for s in samples])
    assert record["metrics"]["missing"] == 0
    assert record["metrics"]["acc"] == pytest.approx(np.mean(gold == np.array(positive)))


def test_result_json_records_metrics_and_provenance(eval_config, tiny_model, tmp_path, monkeypatch):
    from cft.data.demo_data import generate, write_jsonl

    _, questions = generate("biomed", 4, 3, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl", questions)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval" / "demo_knowledge_biomed.json"
    record = run(
        eval_config,
        "biomed",
        "tiny",
        "chat",
        "demo_knowledge_biomed",
        model_dir=tiny_model,
        out_json=out,
        samples_jsonl=out.with_suffix(".jsonl"),
    )
    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(record, default=str))
    # the record names its per-sample log's content, which the tables check
    assert on_disk["samples_sha256"] == file_sha256(out.with_suffix(".jsonl"))
    assert set(on_disk) >= {
        "domain",
        "model",
        "method",
        "task",
        "metrics",
        "n_samples",
        "lm_eval_arguments",
        "model_fingerprint",
        "date",
        "wall_seconds",
        "provenance",
    }
    assert 0 <= on_disk["metrics"]["acc"] <= 1
    assert on_disk["n_samples"]["effective"] == len(questions)
    # the per-sample log gives the recorded score, each question's fact and its margin
    from cft.tables.uncertainty import read_outcomes, score

    outcomes = read_outcomes(out.with_suffix(".jsonl"), "acc")
    assert outcomes.n == len(questions)
    assert score(outcomes)[0] == pytest.approx(on_disk["metrics"]["acc"])
    assert len(set(outcomes.clusters)) == len(questions) // 4  # 4 wordings per fact
    assert outcomes.margins is not None and np.all(np.isfinite(outcomes.margins))
    arguments = on_disk["lm_eval_arguments"]
    assert arguments["num_fewshot"] == 0 and arguments["apply_chat_template"] is False
    assert arguments["dtype"] == "float32" and arguments["batch_size"] == 8
    assert on_disk["provenance"]["packages"]["lm_eval"] == "0.4.13"
    assert len(out.with_suffix(".jsonl").read_text().splitlines()) == len(questions)


def test_missing_hub_data_offline_names_the_dataset_and_the_target(tmp_path, tiny_model):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "empty_hf_home"),
        "PYTHONPATH": str(REPO / "src"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cft.evaluation.evaluate",
            "--domain",
            "finance",
            "--model",
            "smollm2-135m-instruct",
            "--method",
            "chat",
            "--task",
            "finben_fiqasa",
            "--model-dir",
            str(tiny_model),
            "--out",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert "finben_fiqasa" in result.stderr
    assert "snakemake download_eval_data" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_cloze_variant_scores_the_option_text(eval_config, tiny_model, tmp_path, monkeypatch):
    from cft.data.demo_data import generate, write_jsonl

    _, questions = generate("finance", 4, 3, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "finance" / "questions.jsonl", questions)
    monkeypatch.chdir(tmp_path)
    results, _ = evaluate(eval_config, "demo_knowledge_finance_cloze", tiny_model, device="cpu")
    samples = results["samples"]["demo_knowledge_finance_cloze"]
    assert len(samples) == len(questions)
    for sample in samples:
        context, _ = sample["arguments"][0]
        assert context.endswith("Answer:") and "\nA. " not in context
        continuations = [arg[1] for arg in sample["arguments"]]
        assert continuations == [" " + choice for choice in sample["doc"]["choices"]]


def test_the_model_loaded_once_scores_as_lm_evals_own_loading(
    eval_config, tiny_model, tmp_path, monkeypatch
):
    """run() reads the weights once (fingerprint, NaN check and the model from the same bytes)
    and hands the model to lm-eval: the per-sample log equals lm-eval loading the folder."""
    import io

    from cft.core.fingerprints import folder_fingerprint
    from cft.data.demo_data import generate, write_jsonl
    from cft.evaluation.weights import load_checked_model

    _, questions = generate("biomed", 3, 2, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl", questions)
    monkeypatch.chdir(tmp_path)
    dtype = eval_config["evaluation"]["dtype"] = "auto"  # the checkpoint's: the default
    task = "demo_knowledge_biomed_cloze"
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    reads = []
    real_open = io.open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".safetensors"):
            reads.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting_open)
    model, fingerprint = load_checked_model(folder, dtype, "cpu")
    monkeypatch.setattr(io, "open", real_open)
    assert reads == [str(folder / "model.safetensors")]
    assert fingerprint == folder_fingerprint(folder)
    assert next(model.parameters()).dtype == torch.float32  # the tiny model is saved in fp32
    bf16, _ = load_checked_model(folder, "bfloat16", "cpu")  # a requested dtype is applied
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    (folder / "model.safetensors").unlink()  # lm-eval must not read the weights again
    loaded, _ = evaluate(eval_config, task, folder, device="cpu", model=model)
    own, _ = evaluate(eval_config, task, tiny_model, device="cpu")
    resps = [[s["resps"], s["filtered_resps"], s["acc"]] for s in loaded["samples"][task]]
    assert resps == [[s["resps"], s["filtered_resps"], s["acc"]] for s in own["samples"][task]]


def test_the_record_names_its_cell_and_the_table_accepts_it(eval_config, tiny_model, tmp_path,
                                                            monkeypatch):  # fmt: skip
    """run() on the hf path (the model loaded by the pipeline, not by lm-eval): the record
    names the cell it was run for, which is what the table checks before using it."""
    from cft.core.grid import CellKey
    from cft.core.settings import evaluation_settings_hash
    from cft.data.demo_data import generate, write_jsonl
    from cft.evaluation.task_folders import reported_metric
    from cft.tables.table import checked_outcomes, read_record

    _, questions = generate("biomed", 3, 2, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl", questions)
    monkeypatch.chdir(tmp_path)
    task, name = "demo_knowledge_biomed_cloze", next(iter(eval_config["models"]))
    out = tmp_path / "eval.json"
    record = evaluation.run(eval_config, "biomed", name, "cft", task, model_dir=tiny_model,
                            out_json=out, seed=7)  # fmt: skip
    cell = {"domain": "biomed", "model": name, "method": "cft", "training_seed": 7, "task": task}
    assert {key: record[key] for key in cell} == cell
    metric, settings_hash = reported_metric(task), evaluation_settings_hash(eval_config, name, task)
    key, read = read_record(out)
    assert key == CellKey(**cell)
    value, outcomes = checked_outcomes(out, read, metric, settings_hash)
    assert value == record["metrics"][metric] and outcomes.n == len(questions)


def test_one_process_scores_a_suite_and_keeps_the_records_still_current(
    eval_config, tiny_model, tmp_path, monkeypatch
):
    """run_tasks as the workflow's job per evaluated model runs it (keep_current): the domain's
    two demo tasks scored after one read of the weights; run again, nothing is read or
    rescored; a damaged per-sample log rescores its task alone; new questions (both tasks'
    data) and a changed model rescore both."""
    from cft.core.fingerprints import record_fingerprint
    from cft.data.demo_data import generate, write_jsonl

    questions = tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl"
    write_jsonl(questions, generate("biomed", 3, 2, seed=0)[1])
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    name, tasks = (
        next(iter(eval_config["models"])),
        ["demo_knowledge_biomed", "demo_knowledge_biomed_cloze"],
    )
    records = {task: tmp_path / "eval" / f"{task}.json" for task in tasks}
    loads = []
    load = evaluation.load_checked_model
    monkeypatch.setattr(evaluation, "load_checked_model", lambda *a: loads.append(a) or load(*a))

    def score() -> set[str]:
        """Run the job; the tasks whose record was rewritten."""
        before = {task: out.read_bytes() if out.exists() else None for task, out in records.items()}
        evaluation.run_tasks(eval_config, "biomed", name, "chat", records, model_dir=model,
                             keep_current=True)  # fmt: skip
        return {task for task, out in records.items() if out.read_bytes() != before[task]}

    assert score() == set(tasks) and len(loads) == 1
    for task, out in records.items():
        record = json.loads(out.read_text())
        assert record["task"] == task and record["task_data_sha256"] == {
            "results/demo_data/biomed/questions.jsonl": file_sha256(questions)
        }
    assert score() == set() and len(loads) == 1  # all current: the weights are not even read
    log = records["demo_knowledge_biomed"].with_suffix(".samples.jsonl")
    log.write_text(log.read_text()[:-50])
    assert score() == {"demo_knowledge_biomed"} and len(loads) == 2
    write_jsonl(questions, generate("biomed", 4, 2, seed=1)[1])
    assert score() == set(tasks) and len(loads) == 3
    (model / "README.md").write_text("a new version of the model\n")
    record_fingerprint(model)  # as the base_model stage records a model folder it (re)writes
    assert score() == set(tasks) and len(loads) == 4


def demo_cloze_task(tmp_path: Path, monkeypatch, n_entities: int) -> tuple[list, str]:
    """The biomed demo's held-out questions of ``n_entities`` invented diseases, written where
    the cloze task reads them (the working directory moves to ``tmp_path``); returns the
    questions and the task's name."""
    from cft.data.demo_data import generate, write_jsonl

    _, questions = generate("biomed", n_entities, 2, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl", questions)
    monkeypatch.chdir(tmp_path)
    return questions, "demo_knowledge_biomed_cloze"


def test_bf16_weights_give_float32_log_likelihoods(eval_config, tiny_model, tmp_path,
                                                   monkeypatch):  # fmt: skip
    """bf16 weights, float32 log-probabilities: each option's log-likelihood is the float32
    log_softmax of the model's logits (as vLLM computes it), so two options closer than a bf16
    step are ordered as the model orders them. ``logprobs_dtype: model`` is lm-eval's own hf
    behaviour: every log-likelihood a bf16 number."""
    from itertools import combinations

    from lm_eval.models.huggingface import HFLM

    from cft.evaluation.weights import load_model

    _, task = demo_cloze_task(tmp_path, monkeypatch, 3)
    eval_config["evaluation"].update(dtype="bfloat16", batch_size=1)
    runs = {}
    for logprobs in ("float32", "model"):
        eval_config["evaluation"]["logprobs_dtype"] = logprobs
        results, settings = evaluate(eval_config, task, tiny_model, device="cpu")
        assert settings["logprobs_dtype"] == logprobs
        runs[logprobs] = results["samples"][task]
    model = load_model(tiny_model, "bfloat16", "cpu")
    encode = HFLM(pretrained=model, tokenizer=str(tiny_model), batch_size=1)._encode_pair

    def truth(context: str, continuation: str) -> float:
        context_ids, continuation_ids = encode(context, continuation)
        with torch.no_grad():
            logits = model(torch.tensor([context_ids + continuation_ids])).logits[0]
        logprobs = logits.float().log_softmax(-1)
        start = len(context_ids) - 1
        return sum(logprobs[start + i, t].item() for i, t in enumerate(continuation_ids))

    def bf16_step(value: float) -> float:
        return 2.0 ** (math.floor(math.log2(abs(value))) - 7)

    close = 0
    for ours, lm_evals in zip(runs["float32"], runs["model"], strict=True):
        expected = [truth(*argument) for argument in ours["arguments"]]
        got = [resp[0][0] for resp in ours["resps"]]
        assert got == pytest.approx(expected, abs=1e-3)
        rounded = [resp[0][0] for resp in lm_evals["resps"]]
        assert all(torch.tensor(v).bfloat16().item() == v for v in rounded)
        for a, b in combinations(range(len(expected)), 2):
            gap = abs(expected[a] - expected[b])
            if 0.01 < gap < bf16_step(max(expected[a], expected[b], key=abs)):
                close += 1
                assert (got[a] > got[b]) == (expected[a] > expected[b])
    assert close > 0  # the questions hold options closer than a bf16 step


def test_a_model_changed_after_it_was_written_is_refused(eval_config, tmp_path, tiny_model):
    """Same names, same sizes, other values: the fingerprint covers the contents."""
    from cft.core.fingerprints import PROVENANCE_FILE, folder_fingerprint, verified_fingerprint

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    write_json(folder / PROVENANCE_FILE, {"fingerprint": folder_fingerprint(folder)})
    # what Snakemake and the pipeline add to a published folder is not part of the model
    (folder / ".snakemake_timestamp").touch()
    (folder / ".cft-output").write_text("marker\n")
    assert verified_fingerprint(folder) == folder_fingerprint(folder)
    before = (folder / "model.safetensors").stat().st_size
    changed = _copy_with_weights(tiny_model, tmp_path / "changed", lambda t: t * 2)
    shutil.copy(changed / "model.safetensors", folder / "model.safetensors")
    assert (folder / "model.safetensors").stat().st_size == before
    with pytest.raises(ModelFilesError, match="model files changed after they were written"):
        evaluation.run(eval_config, "biomed", "m", "chat", "demo_knowledge_biomed_cloze",
                       model_dir=folder, out_json=tmp_path / "eval.json")  # fmt: skip
    assert not (tmp_path / "eval.json").exists()


def test_a_model_folder_without_its_record_is_refused(eval_config, tmp_path, tiny_model):
    """Without the record of the stage that wrote it, nothing says what the files should be:
    a refusal naming the record files, not a model trusted unchecked."""
    from cft.core.fingerprints import METRICS_FILE, PROVENANCE_FILE

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / PROVENANCE_FILE).unlink()
    with pytest.raises(ModelFilesError, match=f"neither {PROVENANCE_FILE} nor {METRICS_FILE}"):
        evaluation.run(eval_config, "biomed", "m", "chat", "demo_knowledge_biomed_cloze",
                       model_dir=folder, out_json=tmp_path / "eval.json")  # fmt: skip
    write_json(folder / PROVENANCE_FILE, {"model": "m"})
    with pytest.raises(ModelFilesError, match="no 'fingerprint'"):
        evaluation.run(eval_config, "biomed", "m", "chat", "demo_knowledge_biomed_cloze",
                       model_dir=folder, out_json=tmp_path / "eval.json")  # fmt: skip
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("nan", "holds NaN or infinite values"),
        ("truncate", "not a complete safetensors file"),
    ],
)
def test_a_broken_model_is_refused_before_scoring(eval_config, tmp_path, tiny_model, damage,
                                                  message):  # fmt: skip
    folder = _copy_with_weights(tiny_model, tmp_path / "model",
                                lambda t: torch.full_like(t, float("nan")))  # fmt: skip
    if damage == "truncate":
        shutil.copytree(tiny_model, tmp_path / "t")
        data = (tmp_path / "t" / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFilesError, match=message):
        evaluation.run(eval_config, "biomed", "m", "chat", "demo_knowledge_biomed_cloze",
                       model_dir=folder, out_json=tmp_path / "eval.json")  # fmt: skip
    with pytest.raises(ModelFilesError, match=message):  # the check before a vLLM evaluation
        check_weights(folder)


def samples_both_ways(config: dict, task: str, model) -> dict[bool, list]:
    """lm-eval's per-sample log of ``task`` with shared contexts (True) and with lm-eval's own
    hf code (False)."""
    runs = {}
    for share in (True, False):
        config["evaluation"]["share_context"] = share
        results, settings = evaluate(config, task, model, device="cpu")
        assert settings["share_context"] is share
        runs[share] = results["samples"][task]
    return runs


def test_shared_contexts_score_options_as_lm_evals_hf_backend(eval_config, tiny_model, tmp_path,
                                                              monkeypatch):  # fmt: skip
    """One forward pass per question (`evaluation.share_context`) gives every option the
    log-likelihood and greedy flag of lm-eval's own hf backend (one pass per option), and so
    the same answers; the options are several tokens long, so the mask and the position ids
    of every option token are exercised, in batches of unequal lengths."""
    from transformers import AutoTokenizer

    questions, task = demo_cloze_task(tmp_path, monkeypatch, 4)
    eval_config["evaluation"].update(dtype="float32", batch_size=8)
    runs = samples_both_ways(eval_config, task, tiny_model)
    assert len(runs[True]) == len(questions) > 8
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    multi_token = 0
    for shared, plain in zip(runs[True], runs[False], strict=True):
        assert shared["arguments"] == plain["arguments"]
        for ours, theirs in zip(shared["resps"], plain["resps"], strict=True):
            assert ours[0][0] == pytest.approx(theirs[0][0], abs=1e-4)
            assert ours[0][1] == theirs[0][1]
        assert shared["acc"] == plain["acc"]
        multi_token += sum(
            len(tokenizer(f" {o}")["input_ids"]) > 1 for o in shared["doc"]["choices"]
        )
    assert multi_token > len(questions)  # most options are several tokens long


@pytest.mark.parametrize("kind", ["gemma3_text", "gemma3", "mistral"])
def test_shared_contexts_keep_sliding_windows(kind, eval_config, packaged_tokenizer, tmp_path,
                                              monkeypatch):  # fmt: skip
    """Gemma-3 (sliding and full layers, text-only and in its multimodal wrapper) and Mistral
    v0.1 (every layer sliding) with an 8-token window under questions of 15+ tokens: every
    option's log-likelihood and greedy flag equal lm-eval's own hf backend's, which runs the
    model's own sliding-window masks."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cft.evaluation.shared_context import layer_windows

    window = 8
    model = tiny_sliding_model(kind, tmp_path / kind, packaged_tokenizer, window)
    _, task = demo_cloze_task(tmp_path, monkeypatch, 3)
    eval_config["evaluation"].update(dtype="float32", batch_size=8)
    runs = samples_both_ways(eval_config, task, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    assert min(len(tokenizer(s["arguments"][0][0])["input_ids"]) for s in runs[True]) > window
    # the shared pass ran (its masks, not a fallback to lm-eval's code)
    loaded = AutoModelForCausalLM.from_pretrained(model)
    expected = (
        {"": window} if kind == "mistral" else {"full_attention": None, "sliding_attention": window}
    )
    assert layer_windows(loaded) == expected
    for shared, plain in zip(runs[True], runs[False], strict=True):
        for ours, theirs in zip(shared["resps"], plain["resps"], strict=True):
            assert ours[0][0] == pytest.approx(theirs[0][0], abs=1e-4)
            assert ours[0][1] == theirs[0][1]


def test_layer_windows_name_what_the_shared_pass_can_reproduce():
    """Full attention everywhere, one window everywhere, a window per layer type; layer types
    the shared pass has no mask for (chunked attention) and kernels that take no boolean mask
    (eager) go to lm-eval's own code (None)."""
    from types import SimpleNamespace

    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen3Config

    from cft.evaluation.shared_context import layer_windows

    def windows(config, kernel="sdpa"):
        config._attn_implementation = kernel
        return layer_windows(SimpleNamespace(config=config))

    assert windows(LlamaConfig()) == {"": None}
    assert windows(Qwen3Config()) == {"": None}  # use_sliding_window is false
    assert windows(Qwen3Config(use_sliding_window=True, max_window_layers=0)) == {"": 4096}
    assert windows(MistralConfig(sliding_window=4096)) == {"": 4096}
    assert windows(MistralConfig(sliding_window=None)) == {"": None}
    gemma = Gemma3TextConfig(sliding_window=512)
    assert windows(gemma) == {"full_attention": None, "sliding_attention": 512}
    assert windows(gemma, "eager") is None
    chunked = LlamaConfig()
    chunked.layer_types = ["chunked_attention", "full_attention"]
    assert windows(chunked) is None


def test_models_placed_by_their_mask_are_not_given_shared_contexts():
    """ALiBi models (BLOOM) derive positions from the attention mask, which the shared-context
    mask would scramble: they go to lm-eval's own code; RoPE and learned positions do not."""
    from transformers import (
        BloomConfig,
        BloomForCausalLM,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from cft.evaluation.shared_context import takes_position_ids

    small = {"vocab_size": 64}
    llama_config = LlamaConfig(
        num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2, **small
    )
    llama = LlamaForCausalLM(llama_config)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, **small))
    bloom = BloomForCausalLM(BloomConfig(n_layer=1, hidden_size=16, n_head=2, **small))
    assert takes_position_ids(llama) and takes_position_ids(gpt2)
    assert not takes_position_ids(bloom)
