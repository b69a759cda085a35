"""Fidelity to the authors' released code: the `document` packing mode (vectorlm's working
`partial` packing) on the real SmolLM2 tokenizer, and each training switch changing exactly
what it claims (pure bf16, per-micro-batch loss means, per-micro-batch clipping, weight decay
on every parameter), with config/paper.yaml resolving to the authors' settings."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from conftest import REPO

from cft.core.config import ConfigError, load_config, validate_config
from cft.packing.packer import Conditioning, PackStats, chunk_documents, prompt_conditioning

MAX = 24  # max_seq_len of the chunking tests


@pytest.fixture(scope="module")
def tokenizer(packaged_tokenizer):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_tokenizer)


def text_ids(tokenizer, n: int) -> np.ndarray:
    """Exactly ``n`` real token ids of English text."""
    ids = tokenizer(
        "Hepatocytes metabolise drugs through cytochrome enzymes in the liver. " * 20,
        add_special_tokens=False,
    ).input_ids
    return np.asarray(ids[:n], dtype=np.int32)


def chunks(tokenizer, docs, prompt: str, *, bos_id, wrapping="authors"):
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
            wrapping=wrapping,
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


@pytest.mark.parametrize("with_bos", [True, False], ids=["bos", "no-bos"])
def test_single_wrapping_opens_each_chunk_once_and_ends_the_document_once(tokenizer, with_bos):
    """packing.document_wrapping: single, by hand: the stream is prompt text [EOS] (labels -100
    x prompt, text, EOS), cut into pieces of max_seq_len - 1 (BOS) or max_seq_len, each opened
    with BOS: one BOS per chunk, one EOS per document, at its end."""
    bos = tokenizer.bos_token_id if with_bos else None
    eos = tokenizer.eos_token_id
    head = [bos] if with_bos else []
    prompt = "Compare and contrast"
    p = tokenizer(prompt + "\n\n", add_special_tokens=False).input_ids
    room = MAX - len(head)
    long = text_ids(tokenizer, 2 * room + 7)
    short = text_ids(tokenizer, 5)
    out, stats, _ = chunks(tokenizer, [("long", long), ("short", short)], prompt, bos_id=bos,
                           wrapping="single")  # fmt: skip
    expected = []
    for text in (long, short):
        stream = [*p, *text, eos]
        targets = [*([-100] * len(p)), *text, eos]
        for i in range(0, len(stream), room):
            expected.append(([*head, *stream[i : i + room]],
                             [-100] * len(head) + targets[i : i + room]))  # fmt: skip
    assert [(c["input_ids"].tolist(), c["labels"].tolist()) for c in out] == expected
    for chunk in out:
        ids = chunk["input_ids"].tolist()
        assert ids.count(eos) <= 1 and (not with_bos or (ids.count(bos) == 1 and ids[0] == bos))
    assert sum(c["input_ids"].tolist().count(eos) for c in out) == 2  # one per document
    labelled = sum(int(np.count_nonzero(c["labels"] != -100)) for c in out)
    assert stats.text_tokens == stats.document_tokens == labelled == len(long) + len(short) + 2


def test_a_prompt_that_fills_the_chunk_is_an_error(tokenizer):
    from cft.packing.packer import PackingError

    with pytest.raises(PackingError, match="leaves no room for text"):
        chunks(tokenizer, [("d", text_ids(tokenizer, 5))], "word " * 40, bos_id=None)


def test_pure_bf16_needs_bf16_compute(demo_config):
    demo_config.setdefault("training", {}).update(precision="fp32", master_weights="bf16")
    with pytest.raises(ConfigError, match=r"master_weights' = 'bf16' needs training.precision"):
        validate_config(demo_config)


def test_paper_config_resolves_to_the_authors_settings():
    config = load_config(REPO / "config" / "paper.yaml")
    train_cfg = config["training"]
    assert config["packing"]["mode"] == "document"
    assert config["packing"]["document_wrapping"] == "authors"
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
