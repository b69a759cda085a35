"""The held-out text task (`heldout_text`): a domain's validation documents scored whole by
lm-eval's rolling log-likelihood, as bits per byte, through the evaluation stage and into a
table with intervals over documents and paired differences, out of the Average."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from cft.core.config import training_seeds, validate_config
from cft.core.grid import CellKey
from cft.core.paths import corpus_table, eval_json, run_eval_dir, samples_path
from cft.data import corpus
from cft.data.demo_data import run as demo_data
from cft.evaluation.evaluate import run
from cft.evaluation.harness import evaluate
from cft.evaluation.task_folders import TaskFileError, corpus_split, is_local, task_metadata
from cft.tables.figures import bar_chart
from cft.tables.formats import to_csv, to_markdown
from cft.tables.table import build_table
from cft.tables.uncertainty import Bootstrap, read_outcomes, score

TASK = "heldout_text"


@pytest.fixture
def heldout_config(demo_config, tmp_path, monkeypatch):
    """The demo's biomed documents through the corpus stage, half held out, in the
    workflow's layout under ``tmp_path`` (the working directory)."""
    monkeypatch.chdir(tmp_path)
    demo_config["corpus"]["validation_fraction"] = 0.5
    demo_config["evaluation"].update(
        dtype="float32", batch_size=4, suites={"biomed": ["demo_knowledge_biomed_cloze", TASK]}
    )
    config = validate_config(demo_config)
    demo_data("biomed", 10, 2, 0, tmp_path / "raw")
    corpus.run(config, "biomed", tmp_path / "raw", tmp_path / "results" / "corpus" / "biomed")
    return config


def validation_documents() -> pd.DataFrame:
    table = pd.read_parquet(corpus_table("biomed"))
    return table[table["split"] == "validation"].sort_values("doc_id")


def test_the_task_reads_its_domains_corpus():
    assert corpus_split(TASK) == "validation" and is_local(TASK)  # no hub download planned
    assert corpus_split("demo_knowledge_biomed_cloze") is None
    assert task_metadata(TASK, "law") == {"corpus": "results/corpus/law/documents.parquet"}
    assert task_metadata("demo_knowledge_biomed_cloze", "law") == {}
    with pytest.raises(TaskFileError, match="scores a domain's corpus"):
        task_metadata(TASK, None)


def test_each_document_is_scored_whole_as_the_models_own_loss(heldout_config, tiny_model):
    """Every validation document is one sample; its log-likelihood is the model's own over
    the document's tokens after the prefix token (lm-eval's rolling windows, here one window),
    with no prompt; bits per byte pools them as -sum(ll) / sum(bytes) / ln 2."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    results, _ = evaluate(heldout_config, TASK, tiny_model, device="cpu", domain="biomed")
    samples = sorted(results["samples"][TASK], key=lambda s: s["doc_id"])
    documents = validation_documents()
    assert len(samples) == len(documents) >= 3
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    prefix = (
        tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    )
    total_ll, total_bytes = 0.0, 0
    for sample, text in zip(samples, documents["text"], strict=True):
        assert sample["doc"]["text"] == text
        ids = torch.tensor([[prefix, *tokenizer(text, add_special_tokens=False)["input_ids"]]])
        with torch.no_grad():
            logprobs = model(ids).logits[0, :-1].log_softmax(-1)
        expected = logprobs.gather(1, ids[0, 1:, None]).sum().item()
        ll, n_bytes = sample["bits_per_byte"]
        assert ll == pytest.approx(expected, rel=1e-4)
        assert n_bytes == len(text.encode("utf-8"))
        total_ll, total_bytes = total_ll + ll, total_bytes + n_bytes
    metric = results["results"][TASK]["bits_per_byte,none"]
    assert metric == pytest.approx(-total_ll / total_bytes / math.log(2))


def test_shared_context_scores_documents_as_lm_evals_hf_backend(heldout_config, tiny_model):
    runs = {}
    for share in (True, False):
        heldout_config["evaluation"]["share_context"] = share
        results, _ = evaluate(heldout_config, TASK, tiny_model, device="cpu", domain="biomed")
        runs[share] = [s["bits_per_byte"][0] for s in results["samples"][TASK]]
    assert runs[True] == pytest.approx(runs[False], rel=1e-5)


def test_without_its_domain_the_task_is_refused(heldout_config, tiny_model):
    with pytest.raises(TaskFileError, match="scores a domain's corpus"):
        evaluate(heldout_config, TASK, tiny_model, device="cpu")


def test_a_domain_with_nothing_held_out_is_named(heldout_config, tiny_model, tmp_path):
    path = tmp_path / corpus_table("biomed")
    table = pd.read_parquet(path)
    table.assign(split="train").to_parquet(path)
    with pytest.raises(Exception, match="no documents in the 'validation' split"):
        evaluate(heldout_config, TASK, tiny_model, device="cpu", domain="biomed")


def _damaged(tiny_model, folder):
    """The tiny model with its embeddings shifted: a different model of the same tokens."""
    import shutil

    from safetensors.torch import load_file, save_file

    from cft.core.fingerprints import record_fingerprint

    shutil.copytree(tiny_model, folder)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    generator = torch.Generator().manual_seed(0)
    changed = {
        name: tensor + 0.05 * torch.randn(tensor.shape, generator=generator)
        if tensor.is_floating_point() else tensor
        for name, tensor in tensors.items()
    }  # fmt: skip
    save_file(changed, weights, metadata={"format": "pt"})
    record_fingerprint(folder)  # written as a stage writes a model
    return folder


def test_the_table_reports_bits_per_byte_with_intervals_out_of_the_average(
    heldout_config, tiny_model, tmp_path
):
    """Two rows (the untrained model and a `cpt` stand-in, another set of weights) scored by
    the evaluation stage: the column is in bits per byte with an interval over documents, the
    best row is the lower one, the paired difference is the difference of the two, and the
    Average is the cloze task's alone."""
    from cft.data.demo_data import generate, write_jsonl

    _, questions = generate("biomed", 6, 2, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl", questions)
    heldout_config["grid"]["methods"] = ["chat", "cpt"]
    model = heldout_config["grid"]["models"][0]  # its name; the tiny model's weights
    folders = {"chat": tiny_model, "cpt": _damaged(tiny_model, tmp_path / "other")}
    records = []
    for method, folder in folders.items():
        seed = None if method == "chat" else training_seeds(heldout_config)[0]
        for task in ("demo_knowledge_biomed_cloze", TASK):
            out = tmp_path / eval_json("biomed", model, method, seed, task)
            run(heldout_config, "biomed", model, method, task, model_dir=folder,
                out_json=out, seed=seed)  # fmt: skip
            records.append(out)
            assert CellKey.of(json.loads(out.read_text())).task == task
    table = build_table(heldout_config, "biomed", model, records, [], bootstrap=Bootstrap(500))
    bpb = {
        row.label: score(read_outcomes(samples_path(path), "bits_per_byte"))[0]
        for row, path in zip(table.rows, records[1::2], strict=True)
    }
    for row in table.rows:
        ours = table.ours[(row.label, TASK)]
        assert ours == pytest.approx(bpb[row.label]) and 0 < ours < 20  # bits, not percent
        interval = table.intervals[(row.label, TASK)]
        assert interval.low < ours < interval.high
        cloze = table.ours[(row.label, "demo_knowledge_biomed_cloze")]
        assert table.average(table.ours, row.label) == pytest.approx(cloze)
    chat, cpt = (row.label for row in table.rows)
    assert table.best(TASK) == min(bpb.values())
    paired = table.paired[chat][(cpt, TASK)]
    assert paired.value == pytest.approx(bpb[cpt] - bpb[chat])
    assert np.isfinite([paired.low, paired.high]).all() and paired.low <= paired.high
    markdown = to_markdown(table)
    assert "bits per byte of the domain's held-out documents, lower is better" in markdown
    assert f"{table.ours[(chat, TASK)]:.3f}" in markdown
    assert any(line.split(",")[4] == "bits_per_byte" for line in to_csv(table).splitlines())
    bar_chart(table, tmp_path / "bars.png", tmp_path / "bars.svg")  # a panel of its own
    assert "bits per byte (lower is better)" in (tmp_path / "bars.svg").read_text()


def test_the_rule_reads_the_domains_corpus(tmp_path):
    """The evaluation job of the held-out text takes the domain's corpus as its input, and no
    download is planned for it: a rebuilt corpus reruns it."""
    import yaml
    from conftest import REPO, job_counts, snakemake

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["evaluation"]["suites"] = {"biomed": [TASK]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = run_eval_dir("biomed", "smollm2-135m-instruct", "chat")
    result = snakemake(target, "-n", "--directory", str(tmp_path),
                       "--configfile", str(tmp_path / "config.yaml"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["evaluate"] == 1 and counts["corpus"] == 1, counts
    assert "download_eval_task" not in counts
