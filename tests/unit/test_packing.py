"""Tokenization and packing on the real SmolLM2 tokenizer: masking, block lengths, EOS, prompt
sampling, token accounting, determinism, chat format and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scistats

from cft.core.config import ConfigError, load_prompt_file, resolve_path, validate_config
from cft.packing.packer import PackingError, PackStats, make_condition, pack, prompt_conditioning
from cft.packing.tokenize import run

SEQ = 64


PACKING = {"prompt_format": "plain", "prompt_sampling": "per_block", "prompt_separator": "\n\n"}


@pytest.fixture(scope="module")
def tokenizer(packaged_tokenizer):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_tokenizer)


@pytest.fixture(scope="module")
def cft_prompts():
    return [p["text"] for p in load_prompt_file(resolve_path("config/prompts/cft.yaml"))["prompts"]]


def documents(tokenizer, n=40, seed=0):
    rng = np.random.default_rng(seed)
    words = [
        "liver",
        "kidney",
        "enzyme",
        "protein",
        "dose",
        "trial",
        "patient",
        "gene",
        "cell",
        "tissue",
    ]
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=int(rng.integers(5, 120))))
        out.append((f"doc{i:03d}", tokenizer(text, add_special_tokens=False).input_ids))
    return out


def do_pack(tokenizer, docs, method="cft", prompts=(), packing=PACKING, seed=1, autogen=None):
    stats = PackStats()
    condition = make_condition(
        method, tokenizer, prompts=list(prompts), autogen=autogen, packing=packing, seed=seed
    )
    eos = tokenizer.eos_token_id
    blocks = [
        {
            key: value.tolist() if isinstance(value, np.ndarray) else value
            for key, value in block.items()
        }
        for block in pack(
            iter(docs), max_seq_len=SEQ, eos_id=eos, pad_id=eos, condition=condition, stats=stats
        )
    ]
    return blocks, stats


@pytest.fixture
def corpus_table(tmp_path, demo_config):
    from cft.data.demo_data import generate

    docs, _ = generate("biomed", 12, 3, seed=1)
    table = pd.DataFrame(
        {
            "doc_id": [d["doc_id"] for d in docs],
            "split": ["validation" if i % 9 == 0 else "train" for i in range(len(docs))],
            "text": [d["text"] for d in docs],
        }
    )
    path = tmp_path / "documents.parquet"
    table.to_parquet(path)
    return path


@pytest.fixture
def config(demo_config):
    demo_config["training"] = {"max_seq_len": 128}
    return validate_config(demo_config)


def run_stage(config, method, corpus, model_dir, out, threads=1):
    return run(
        config,
        "biomed",
        "smollm2-135m-instruct",
        method,
        corpus_table=corpus,
        tokenizer_dir=model_dir,
        out_dir=out,
        threads=threads,
    )


def test_cpt_blocks_are_the_stream_cut_exactly(tokenizer):
    docs = documents(tokenizer)
    blocks, stats = do_pack(tokenizer, docs, method="cpt")
    stream = [t for _, ids in docs for t in [*ids, tokenizer.eos_token_id]]
    assert all(len(b["input_ids"]) == SEQ for b in blocks)
    assert all(sum(b["attention_mask"]) == SEQ for b in blocks[:-1])  # only the last is padded
    text = [
        t for b in blocks for t, m in zip(b["input_ids"], b["attention_mask"], strict=True) if m
    ]
    assert text == stream
    assert all(b["labels"] == b["input_ids"] for b in blocks[:-1])
    last = blocks[-1]
    n_real = sum(last["attention_mask"])
    assert last["labels"][n_real:] == [-100] * (SEQ - n_real)
    # EOS after every document
    assert sum(t == tokenizer.eos_token_id for t in text) == len(docs)
    assert stats.prompt_tokens == 0 and stats.text_tokens == stats.document_tokens == len(stream)


def test_cft_mask_covers_exactly_the_prompt(tokenizer, cft_prompts):
    docs = documents(tokenizer)
    blocks, stats = do_pack(tokenizer, docs, prompts=cft_prompts)
    for block in blocks:
        masked = [
            t for t, label in zip(block["input_ids"], block["labels"], strict=True) if label == -100
        ]
        n_real = sum(block["attention_mask"])
        prompt_ids = masked[: len(masked) - (SEQ - n_real)]
        decoded = tokenizer.decode(prompt_ids)
        assert decoded == cft_prompts[block["prompt_index"]] + "\n\n"
        # everything after the prompt is a label, up to the padding
        labels = block["labels"][len(prompt_ids) : n_real]
        assert labels == block["input_ids"][len(prompt_ids) : n_real]
    # every document token lands in exactly one block, in order
    text = [
        t for b in blocks for t, lab in zip(b["input_ids"], b["labels"], strict=True) if lab != -100
    ]
    assert text == [t for _, ids in docs for t in [*ids, tokenizer.eos_token_id]]
    total = stats.blocks * SEQ
    assert stats.text_tokens + stats.prompt_tokens + stats.pad_tokens == total
    assert stats.text_tokens == stats.document_tokens


def test_per_block_prompts_are_uniform(tokenizer, cft_prompts):
    docs = documents(tokenizer, n=1500, seed=3)
    blocks, _ = do_pack(tokenizer, docs, prompts=cft_prompts)
    counts = np.bincount([b["prompt_index"] for b in blocks], minlength=len(cft_prompts))
    assert len(blocks) > 500
    _, p_value = scistats.chisquare(counts)
    assert p_value > 0.001, counts


def test_per_document_sampling_keeps_a_document_on_one_prompt(tokenizer, cft_prompts):
    """The block that starts with a document gets that document's prompt, whatever the order
    of the stream around it; different documents get different prompts."""
    docs = documents(tokenizer, n=30, seed=4)
    packing = {**PACKING, "prompt_sampling": "per_document"}

    def leading_prompt(stream):  # the prompt of the block that starts with stream[0]
        blocks, _ = do_pack(tokenizer, stream, prompts=cft_prompts, packing=packing, seed=5)
        return blocks[0]["prompt_index"]

    rotated = {doc[0]: leading_prompt(docs[i:] + docs[:i]) for i, doc in enumerate(docs)}
    others_reversed = {
        doc[0]: leading_prompt([doc, *reversed(docs[:i] + docs[i + 1 :])])
        for i, doc in enumerate(docs)
    }
    assert rotated == others_reversed
    assert len(set(rotated.values())) > 1


def test_chat_format_masks_the_template(tokenizer, cft_prompts):
    cond = prompt_conditioning(
        tokenizer, cft_prompts[0], prompt_format="chat", separator="\n\n", index=0
    )
    prefix = tokenizer.decode(list(cond.prefix))
    assert prefix.startswith("<|im_start|>system") and cft_prompts[0] in prefix
    assert prefix.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(list(cond.suffix)) == "<|im_end|>\n"
    docs = documents(tokenizer, n=20)
    packing = {**PACKING, "prompt_format": "chat"}
    blocks, stats = do_pack(tokenizer, docs, prompts=cft_prompts[:1], packing=packing)
    for block in blocks[:-1]:
        labels = block["labels"]
        assert labels[: len(cond.prefix)] == [-100] * len(cond.prefix)
        assert labels[-len(cond.suffix) :] == [-100] * len(cond.suffix)
        assert -100 not in labels[len(cond.prefix) : SEQ - len(cond.suffix)]
    assert stats.text_tokens == stats.document_tokens


def test_prompt_longer_than_block_is_an_error(tokenizer):
    long_prompt = "Study this. " * 40
    with pytest.raises(PackingError, match="max_seq_len 64"):
        do_pack(tokenizer, documents(tokenizer, n=3), prompts=[long_prompt])


def test_unknown_prompt_format_is_an_error(tokenizer):
    with pytest.raises(PackingError, match="unknown prompt_format 'xml'"):
        prompt_conditioning(tokenizer, "Read.", prompt_format="xml", separator="")


def test_autocft_takes_the_block_documents_prompt(tokenizer):
    docs = documents(tokenizer, n=30)
    table = {doc_id: f"Think about document {doc_id}." for doc_id, _ in docs}
    blocks, _ = do_pack(tokenizer, docs, method="autocft", autogen=table)
    # the first block starts with the first document
    masked = [
        t for t, lab in zip(blocks[0]["input_ids"], blocks[0]["labels"], strict=True) if lab == -100
    ]
    assert tokenizer.decode(masked) == "Think about document doc000.\n\n"
    with pytest.raises(PackingError, match="no generated prompt for document 'doc000'"):
        do_pack(tokenizer, docs, method="autocft", autogen={})


def test_stage_output_reconciles_and_loads(config, corpus_table, packaged_tokenizer, tmp_path):
    from datasets import load_from_disk

    record = run_stage(config, "cft", corpus_table, packaged_tokenizer, tmp_path / "cft")
    data = load_from_disk(str(tmp_path / "cft"))
    on_disk = json.loads((tmp_path / "cft" / "stats.json").read_text())
    assert on_disk["fingerprint"] == record["fingerprint"]
    for split in ("train", "validation"):
        s = record["splits"][split]
        assert len(data[split]) == s["blocks"]
        labels = np.array(data[split]["labels"])
        mask = np.array(data[split]["attention_mask"])
        assert labels.shape == (s["blocks"], 128)
        assert (labels != -100).sum() == s["text_tokens"] == s["document_tokens"]
        assert (mask == 0).sum() == s["pad_tokens"]
        assert s["text_tokens"] + s["prompt_tokens"] + s["pad_tokens"] == s["total_tokens"]
        assert s["loss_bearing_fraction"] == pytest.approx(s["text_tokens"] / s["total_tokens"])
    assert sum(record["splits"]["train"]["prompt_counts"].values()) == len(data["train"])


def test_empty_corpus_is_an_error(config, packaged_tokenizer, tmp_path):
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"doc_id": [], "split": [], "text": []}, dtype=str).to_parquet(empty)
    with pytest.raises(PackingError, match="the corpus has no documents"):
        run_stage(config, "cpt", empty, packaged_tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prompt_file_without_prompts_is_an_error(tmp_path, demo_config):
    bad = tmp_path / "cft.yaml"
    bad.write_text(yaml.safe_dump({"kind": "cft", "prompts": []}))
    demo_config["prompts"] = {"cft": str(bad)}
    with pytest.raises(ConfigError, match=r"cft\.yaml: 'prompts' = \[\].*non-empty"):
        validate_config(demo_config)


def test_negative_prompts_match_cft_in_form_and_length():
    cft = load_prompt_file(resolve_path("config/prompts/cft.yaml"), "cft")["prompts"]
    neg = load_prompt_file(resolve_path("config/prompts/negative.yaml"), "negative")["prompts"]
    assert len(cft) == len(neg) == 10
    for c, n in zip(cft, neg, strict=True):
        assert 0.75 <= len(n["text"]) / len(c["text"]) <= 1.25, n["name"]
    assert {p["name"] for p in cft} == {
        "application_of_knowledge",
        "in_depth_exploration",
        "reflective_thinking",
        "creative_interpretation",
        "summarization_and_synthesis",
        "focus_on_key_concepts",
        "contextual_understanding",
        "critical_analysis",
        "question_based_learning",
        "comparative_learning",
    }


def test_same_config_gives_identical_bytes(config, corpus_table, packaged_tokenizer, tmp_path):
    a = run_stage(config, "negcft", corpus_table, packaged_tokenizer, tmp_path / "a", threads=2)
    b = run_stage(config, "negcft", corpus_table, packaged_tokenizer, tmp_path / "b", threads=1)
    assert a["fingerprint"] == b["fingerprint"]
    for path in sorted((tmp_path / "a").rglob("*.arrow")):
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes()
    config["seed"] += 1
    c = run_stage(config, "negcft", corpus_table, packaged_tokenizer, tmp_path / "c")
    assert c["fingerprint"] != a["fingerprint"]


def test_the_stage_ends_documents_with_end_of_text_not_the_chat_end_of_turn(
    config, corpus_table, packaged_tokenizer, tmp_path
):
    """SmolLM2-Instruct's eos_token is <|im_end|>, its chat end of turn: CPT blocks separate the
    documents with <|endoftext|> instead, once per document, and stats.json names it."""
    from datasets import load_from_disk

    record = run_stage(config, "cpt", corpus_table, packaged_tokenizer, tmp_path / "cpt")
    assert record["special_tokens"]["separator"] == {"id": 0, "token": "<|endoftext|>"}
    on_disk = json.loads((tmp_path / "cpt" / "stats.json").read_text())
    assert on_disk["special_tokens"] == record["special_tokens"]
    data = load_from_disk(str(tmp_path / "cpt"))
    documents = len(pd.read_parquet(corpus_table).query("split == 'train'"))
    ids = np.concatenate([np.array(row) for row in data["train"]["input_ids"]])
    labels = np.concatenate([np.array(row) for row in data["train"]["labels"]])
    attended = np.concatenate([np.array(row) for row in data["train"]["attention_mask"]]) == 1
    assert int((labels == 0).sum()) == documents
    assert int((ids[attended] == 2).sum()) == 0  # no <|im_end|> but as padding


def model_folder_with(packaged_tokenizer, folder, **text_config):
    """The packaged tokenizer beside a config.json (no weights: the stage reads the config)."""
    import shutil

    from transformers import LlamaConfig

    shutil.copytree(packaged_tokenizer, folder)
    LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, **text_config).save_pretrained(folder)  # fmt: skip
    return folder


def test_a_block_longer_than_the_model_s_context_is_refused(
    config, corpus_table, packaged_tokenizer, tmp_path
):
    folder = model_folder_with(
        packaged_tokenizer, tmp_path / "model", vocab_size=49152, max_position_embeddings=64
    )
    with pytest.raises(PackingError, match=r"max_seq_len = 128 exceeds the context of "
                       r"models\.smollm2-135m-instruct, 64 tokens"):  # fmt: skip
        run_stage(config, "cpt", corpus_table, folder, tmp_path / "cpt")
    assert not (tmp_path / "cpt").exists()


def test_token_ids_beyond_the_model_s_embedding_are_refused(
    config, corpus_table, packaged_tokenizer, tmp_path
):
    """A tokenizer with more entries than the model has embedding rows (Gemma-3 IT's extra
    <image_soft_token>): the stage names the first id that does not fit."""
    from datasets import load_from_disk

    fits = model_folder_with(packaged_tokenizer, tmp_path / "fits", vocab_size=49152)
    run_stage(config, "cpt", corpus_table, fits, tmp_path / "cpt")
    packed = load_from_disk(str(tmp_path / "cpt"))
    largest = max(max(row) for split in packed.values() for row in split["input_ids"])
    small = model_folder_with(packaged_tokenizer, tmp_path / "small", vocab_size=largest)
    with pytest.raises(PackingError, match=rf"token id {largest} .* has {largest} embedding rows"):
        run_stage(config, "cpt", corpus_table, small, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
