"""Fidelity to the authors' released code: the `document` packing mode (vectorlm's working
`partial` packing) on the real SmolLM2 tokenizer, and each training switch changing exactly
what it claims (pure bf16, per-micro-batch loss means, per-micro-batch clipping, weight decay
on every parameter), with config/paper.yaml resolving to the authors' settings."""

from __future__ import annotations

import copy
import filecmp

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SEQ, first_step_gradient, make_job

from cft.config import ConfigError, load_config, validate_config
from cft.packing import Conditioning, PackStats, chunk_documents, prompt_conditioning
from cft.packing import run as run_packing
from cft.training.launch import parallelism_of, plan_batch
from cft.training.run import train
from cft.training.trainer import make_trainer

MAX = 24  # max_seq_len of the chunking tests


@pytest.fixture(scope="module")
def tokenizer(converted_smollm2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted_smollm2)


def text_ids(tokenizer, n: int) -> np.ndarray:
    """Exactly ``n`` real token ids of English text."""
    ids = tokenizer(
        "Hepatocytes metabolise drugs through cytochrome enzymes in the liver. " * 20,
        add_special_tokens=False,
    ).input_ids
    return np.asarray(ids[:n], dtype=np.int32)


def chunks(tokenizer, docs, prompt: str, *, bos_id):
    cond = prompt_conditioning(tokenizer, prompt, prompt_format="plain", separator="\n\n")
    if bos_id is not None:  # a Llama-style tokenizer adds BOS: the conditioning starts with it
        cond = Conditioning(prefix=(bos_id, *cond.prefix), prompt_index=0)
    else:
        cond = Conditioning(prefix=cond.prefix, prompt_index=0)
    stats = PackStats()
    out = list(
        chunk_documents(
            iter(docs),
            max_seq_len=MAX,
            bos_id=bos_id,
            eos_id=tokenizer.eos_token_id,
            condition=lambda index, doc_id: cond,
            stats=stats,
        )
    )
    prompt_ids = tokenizer(prompt + "\n\n", add_special_tokens=False).input_ids
    return out, stats, prompt_ids


@pytest.mark.parametrize("with_bos", [True, False], ids=["bos", "no-bos"])
def test_document_chunks_equal_hand_computed_expectations(tokenizer, with_bos):
    """vectorlm's partial packing, written out by hand: the document stream is
    [BOS] prompt text [EOS] (labels BOS, -100 x prompt, text, EOS), cut into pieces of
    max_seq_len - 2 and each piece wrapped as [BOS] piece [EOS] (the wrapper EOS a label)."""
    bos = tokenizer.bos_token_id if with_bos else None
    eos = tokenizer.eos_token_id
    head = [bos] if with_bos else []
    prompt = "Compare and contrast"
    p = tokenizer(prompt + "\n\n", add_special_tokens=False).input_ids
    room = MAX - len(head) - 1
    first = room - len(head) - len(p)  # text tokens that fit the first piece with the doc EOS
    short = text_ids(tokenizer, first - 4)  # shorter than a chunk
    exact = text_ids(tokenizer, first - 1)  # with its EOS, fills one chunk exactly
    long = text_ids(tokenizer, first + room + 5)  # three chunks
    docs = [("short", short), ("exact", exact), ("long", long)]
    out, stats, _ = chunks(tokenizer, docs, prompt, bos_id=bos)
    assert len(out) == 1 + 1 + 3

    def wrap(piece, targets):
        return [*head, *piece, eos], [-100] * len(head) + [*targets, eos]

    def document(text):
        return [*head, *p, *text, eos], [*head, *([-100] * len(p)), *text, eos]

    expected = []
    for text in (short, exact, long):
        stream, targets = document(list(text))
        for i in range(0, len(stream), room):
            expected.append(wrap(stream[i : i + room], targets[i : i + room]))
    for chunk, (ids, labels) in zip(out, expected, strict=True):
        assert chunk["input_ids"].tolist() == ids
        assert chunk["labels"].tolist() == labels
        assert chunk["attention_mask"].tolist() == [1] * len(ids)
        assert len(ids) <= MAX
    assert len(out[1]["input_ids"]) == MAX  # the exact document fills its chunk
    # Spelled out: the first piece of a long document opens with the prompt, later ones do not;
    # a mid-document piece ends with a labelled EOS; the last one ends with two EOS.
    assert out[2]["input_ids"][len(head) * 2 : len(head) * 2 + len(p)].tolist() == p
    assert out[3]["labels"][-1] == eos and out[3]["labels"][len(head)] != -100
    assert out[4]["input_ids"][-2:].tolist() == [eos, eos]
    if with_bos:
        assert out[0]["input_ids"][:2].tolist() == [bos, bos] and out[0]["labels"][1] == bos

    # Accounting: every label is counted once; labels + the rest = the stored tokens.
    labelled = sum(int(np.count_nonzero(c["labels"] != -100)) for c in out)
    n_text = len(short) + len(exact) + len(long)
    assert stats.text_tokens == stats.document_tokens == labelled
    assert labelled == n_text + 3 * (1 + len(head)) + len(out)  # text, doc EOS/BOS, wrapper EOS
    assert stats.text_tokens + stats.prompt_tokens == sum(len(c["input_ids"]) for c in out)
    assert stats.prompt_tokens == len(out) * len(head) + 3 * len(p)
    assert stats.pad_tokens == 0 and stats.documents == 3


def test_a_prompt_that_fills_the_chunk_is_an_error(tokenizer):
    from cft.packing import PackingError

    with pytest.raises(PackingError, match="leaves no room for text"):
        chunks(tokenizer, [("d", text_ids(tokenizer, 5))], "word " * 40, bos_id=None)


def test_document_mode_stage_is_exact_and_byte_identical(tmp_path, converted_smollm2, demo_config):
    import pandas as pd

    config = validate_config(copy.deepcopy(demo_config))
    config["packing"]["mode"] = "document"
    config["training"]["max_seq_len"] = 48
    rng = np.random.default_rng(0)
    words = ["the", "liver", "kidney", "drug", "dose", "enzyme", "gene", "protein", "cell", "blood"]
    table = tmp_path / "documents.parquet"
    pd.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(12)],
            "split": ["train"] * 10 + ["validation"] * 2,
            "text": [" ".join(rng.choice(words, rng.integers(5, 90))) for _ in range(12)],
        }
    ).to_parquet(table)
    records = [
        run_packing(
            config,
            "biomed",
            "smollm2-135m-instruct",
            "cft",
            corpus_table=table,
            tokenizer_dir=converted_smollm2,
            out_dir=tmp_path / name,
        )
        for name in ("a", "b")
    ]
    assert records[0]["fingerprint"] == records[1]["fingerprint"]
    arrow = sorted((tmp_path / "a").rglob("*.arrow"))
    assert arrow and all(
        filecmp.cmp(f, tmp_path / "b" / f.relative_to(tmp_path / "a"), shallow=False) for f in arrow
    )
    train_stats = records[0]["splits"]["train"]
    assert records[0]["mode"] == "document"
    assert train_stats["text_tokens"] + train_stats["prompt_tokens"] == train_stats["total_tokens"]
    assert train_stats["pad_tokens"] == 0 and train_stats["blocks"] > 10  # long docs split


# ---- training switches ----------------------------------------------------------------------


def same(a: dict, b: dict) -> bool:
    return all(torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-7) for n in a)


@pytest.fixture(scope="module")
def equal_count_data(tmp_path_factory):
    """Blocks that all carry the same number of loss tokens."""
    from datasets import Dataset, DatasetDict

    from cft.io import write_json

    rng = np.random.default_rng(7)
    ids = rng.integers(0, 49152, size=(8, SEQ))
    labels = ids.copy()
    labels[:, :10] = -100
    path = tmp_path_factory.mktemp("equal") / "cft"
    rows = {
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "attention_mask": np.ones_like(ids).tolist(),
        "prompt_index": [0] * 8,
    }
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(path))
    write_json(path / "stats.json", {"fingerprint": "equal-count-blocks"})
    return path


def test_micro_batch_mean_differs_from_token_weighting_only_on_unequal_counts(
    demo_config, tmp_path, tiny_model, tiny_data, equal_count_data
):
    micro = plan_batch(4, 1, max_per_device=1)  # 4 micro-batches of one block
    gradients = {}
    for data_name, data in (("unequal", tiny_data), ("equal", equal_count_data)):
        for mode in ("tokens", "micro_batch_mean"):
            job = make_job(
                demo_config,
                tmp_path / f"{data_name}-{mode}",
                tiny_model,
                data,
                max_grad_norm=1e9,
                loss_normalization=mode,
            )
            gradients[data_name, mode] = first_step_gradient(job, tiny_model, micro)
    assert not same(gradients["unequal", "tokens"], gradients["unequal", "micro_batch_mean"])
    assert same(gradients["equal", "tokens"], gradients["equal", "micro_batch_mean"])


def test_per_micro_batch_clipping_changes_the_step_only_with_accumulation(
    demo_config, tmp_path, tiny_model, tiny_data
):
    results = {}
    for micro_size in (1, 4):
        plan = plan_batch(4, 1, max_per_device=micro_size)
        for mode in ("per_step", "per_micro_batch"):
            job = make_job(
                demo_config,
                tmp_path / f"{micro_size}-{mode}",
                tiny_model,
                tiny_data,
                max_grad_norm=1e-3,
                grad_clipping=mode,
            )
            results[micro_size, mode] = first_step_gradient(job, tiny_model, plan)
    assert not same(results[1, "per_step"], results[1, "per_micro_batch"])
    assert same(results[4, "per_step"], results[4, "per_micro_batch"])  # one micro-batch


def test_weight_decay_on_every_parameter(demo_config, tmp_path, tiny_model, tiny_data):
    from transformers import AutoModelForCausalLM

    decayed = {}
    for mode in ("exclude_bias_and_norm", "all"):
        job = make_job(
            demo_config, tmp_path / mode, tiny_model, tiny_data, weight_decay_params=mode
        )
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        parallel = parallelism_of(job.recipe, 1, cuda=False)
        trainer = make_trainer(job, model, None, plan_batch(4, 1, 4), parallel)
        optimizer = trainer.create_optimizer()
        names = {id(p): n for n, p in model.named_parameters()}
        decayed[mode] = {
            names[id(p)]
            for g in optimizer.param_groups
            if g["weight_decay"] > 0
            for p in g["params"]
        }
    every = {n for n, _ in AutoModelForCausalLM.from_pretrained(tiny_model).named_parameters()}
    assert decayed["all"] == every
    norms = {n for n in every if "norm" in n}
    assert norms and decayed["exclude_bias_and_norm"] == every - norms


def test_pure_bf16_keeps_parameters_and_adam_state_in_bf16(
    demo_config, tmp_path, tiny_model, tiny_data
):
    job = make_job(
        demo_config, tmp_path, tiny_model, tiny_data, precision="bf16", master_weights="bf16"
    )
    precision = train(job)["precision"]
    assert precision["master_weights"] == precision["optimizer_state"] == "bfloat16"
    assert precision["compute"] == "bfloat16"


def test_pure_bf16_needs_bf16_compute(demo_config):
    demo_config.setdefault("training", {}).update(precision="fp32", master_weights="bf16")
    with pytest.raises(ConfigError, match=r"master_weights' = 'bf16' needs training.precision"):
        validate_config(demo_config)


def test_paper_config_resolves_to_the_authors_settings():
    config = load_config(REPO / "config" / "paper.yaml")
    train_cfg = config["training"]
    assert config["packing"]["mode"] == "document"
    assert config["packing"]["prompt_format"] == "plain"
    assert train_cfg["master_weights"] == "bf16" and train_cfg["precision"] == "bf16"
    assert train_cfg["loss_normalization"] == "micro_batch_mean"
    assert train_cfg["grad_clipping"] == "per_micro_batch"
    assert train_cfg["weight_decay_params"] == "all"
    assert train_cfg["weight_decay"] == 0.1 and train_cfg["adam_betas"] == [0.9, 0.95]


def test_recommended_overlay_changes_exactly_the_switches():
    """Snakemake merges configfiles in order; the overlay turns every switch to the project's
    recommendation and leaves the rest of the paper config alone."""
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    paper = load_configfile(str(REPO / "config" / "paper.yaml"))
    merged = copy.deepcopy(paper)
    update_config(merged, load_configfile(str(REPO / "config" / "recommended.yaml")))
    merged = validate_config(merged)
    assert merged["packing"]["mode"] == "packed"
    assert merged["training"]["master_weights"] == "fp32"
    assert merged["training"]["loss_normalization"] == "tokens"
    assert merged["training"]["grad_clipping"] == "per_step"
    assert merged["training"]["weight_decay_params"] == "exclude_bias_and_norm"
    assert merged["training"]["learning_rate"] == paper["training"]["learning_rate"]
    assert (
        merged["grid"] == paper["grid"]
        and merged["evaluation"]
        == validate_config(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))[
            "evaluation"
        ]
    )
