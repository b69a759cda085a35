"""Llama-3.1, Qwen3 and Gemma-3 through the tokenize stage with their real tokenizers (npm,
tests/modern_tokenizers.py): documents end with the model's end-of-text token, never with the
chat template's end of turn its instruct eos_token names, once per document; a sequence opens
with BOS only where the model has one, once (document mode with the default
`packing.document_wrapping: single`); stats.json names the tokens. Every mode and format."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from modern_tokenizers import FAMILIES, fetch

from cft.core.config import validate_config
from cft.packing.tokenize import run
from cft.packing.tokens import sequence_tokens

pytestmark = pytest.mark.network

SEQ = 96
VARIANTS = {  # (method, packing overrides)
    "cpt packed": ("cpt", {"mode": "packed", "prompt_format": "plain"}),
    "cft packed plain": ("cft", {"mode": "packed", "prompt_format": "plain"}),
    "cft packed chat": ("cft", {"mode": "packed", "prompt_format": "chat"}),
    "cft document": ("cft", {"mode": "document", "prompt_format": "plain"}),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    from transformers import AutoTokenizer

    folder = fetch(request.param)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    expected = {
        key: None if token is None else tokenizer.convert_tokens_to_ids(token)
        for key, token in FAMILIES[request.param][2].items()
    }
    return request.param, folder, tokenizer, expected


@pytest.fixture(scope="module")
def corpus_table(tmp_path_factory):
    from cft.data.demo_data import generate

    docs, _ = generate("biomed", 6, 2, seed=3)
    path = tmp_path_factory.mktemp("corpus") / "documents.parquet"
    pd.DataFrame(
        {
            "doc_id": [d["doc_id"] for d in docs],
            "split": ["validation" if i % 6 == 0 else "train" for i in range(len(docs))],
            "text": [d["text"] for d in docs],
        }
    ).to_parquet(path)
    return path


def test_the_tokens_are_the_model_s_own(family):
    name, _, tokenizer, expected = family
    tokens = sequence_tokens(tokenizer, key=f"models.{name}")
    assert tokens.separator == expected["end_of_text"] != tokenizer.eos_token_id
    assert tokens.end_of_turn == expected["end_of_turn"] == tokenizer.eos_token_id
    assert tokens.bos == expected["bos"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_blocks_separate_documents_with_end_of_text_and_open_once(
    family, variant, corpus_table, demo_config, tmp_path
):
    name, folder, _, expected = family
    method, packing = VARIANTS[variant]
    config = copy.deepcopy(demo_config)
    config["models"] = {name: {"source": "local", "path": str(folder)}}
    config["grid"] = {**config["grid"], "models": [name]}
    config["autogen"] = {**config["autogen"], "model": name}
    config["training"] = {"max_seq_len": SEQ}
    config["packing"] = {**config["packing"], **packing}
    config = validate_config(config)
    out = tmp_path / "tokenized"
    record = run(
        config, "biomed", name, method, corpus_table=corpus_table, tokenizer_dir=folder,
        out_dir=out,
    )  # fmt: skip
    separator, turn, bos = expected["end_of_text"], expected["end_of_turn"], expected["bos"]
    on_disk = json.loads((out / "stats.json").read_text())["special_tokens"]
    assert on_disk["separator"]["id"] == separator
    assert on_disk["separator"]["token"] == FAMILIES[name][2]["end_of_text"]

    from datasets import load_from_disk

    train = load_from_disk(str(out))["train"]
    documents = len(pd.read_parquet(corpus_table).query("split == 'train'"))
    separators = 0
    for ids, labels, mask in zip(
        train["input_ids"], train["labels"], train["attention_mask"], strict=True
    ):
        ids, labels = np.array(ids)[np.array(mask) == 1], np.array(labels)[np.array(mask) == 1]
        learned = labels[labels != -100]
        assert turn not in learned, f"{variant}: the end of turn is a target"
        separators += int((learned == separator).sum())
        if bos is not None and packing["prompt_format"] == "plain":
            assert ids[0] == bos and (ids == bos).sum() == 1, f"{variant}: BOS twice"
        if packing["mode"] == "document":  # a chunk holds one document: one end at most
            assert (ids == separator).sum() <= 1, f"{variant}: two end-of-text in a chunk"
    # one end-of-text per document (document mode: packing.document_wrapping single, the default)
    assert separators == documents == record["splits"]["train"]["documents"]


def test_qwen3_template_arguments_reach_every_rendering(
    monkeypatch, corpus_table, demo_config, tmp_path
):
    """models.<name>.chat_template_kwargs ({enable_thinking: false} for Qwen3) in every use of
    the chat template: packing's chat format, TextAdaptCFT's generation inputs (where Qwen3 then
    answers after an empty thinking block instead of reasoning first), lm-eval's arguments."""
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    from cft.core.config import model_setting
    from cft.evaluation.harness import Placement, model_arguments
    from cft.packing.generators import build_inputs

    folder = fetch("qwen3")
    config = copy.deepcopy(demo_config)
    config["models"] = {
        "qwen3": {
            "source": "local",
            "path": str(folder),
            "chat_template_kwargs": {"enable_thinking": False},
        }
    }
    config["grid"] = {**config["grid"], "models": ["qwen3"]}
    config["autogen"] = {**config["autogen"], "model": "qwen3"}
    config["training"] = {"max_seq_len": SEQ}
    config["packing"] = {**config["packing"], "prompt_format": "chat"}
    config = validate_config(config)
    template_kwargs = model_setting(config, "qwen3", "chat_template_kwargs")

    calls = []
    render = PreTrainedTokenizerBase.apply_chat_template

    def spy(self, conversation, *args, **kwargs):
        calls.append(kwargs.get("enable_thinking"))
        return render(self, conversation, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "apply_chat_template", spy)
    run(
        config, "biomed", "qwen3", "cft", corpus_table=corpus_table, tokenizer_dir=folder,
        out_dir=tmp_path / "tokenized",
    )  # fmt: skip
    assert calls and set(calls) == {False}, calls

    tokenizer = AutoTokenizer.from_pretrained(folder)
    think = tokenizer.convert_tokens_to_ids("<think>")
    ids = build_inputs(tokenizer, ["A text."], "Write a prompt.", "{text}", 100, template_kwargs)
    assert ids[0][-6:].count(think) == 1  # the empty thinking block closes the request
    unset = build_inputs(tokenizer, ["A text."], "Write a prompt.", "{text}", 100)
    assert think not in unset[0]  # left to itself, Qwen3 starts by thinking

    where = Placement(backend="hf", device="cpu", dtype="float32")
    arguments = model_arguments(folder, config["evaluation"], where, template_kwargs)
    assert arguments["chat_template_args"] == {"enable_thinking": False}


def tiny_model_of(name: str, tokenizer, folder):
    """A random 2-layer model of the family's architecture and vocabulary with its real
    tokenizer: Llama-3.1 (128,256 rows), Qwen3 (151,936), Gemma-3 (262,144, a sliding layer
    and a full one)."""
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    from cft.core.fingerprints import record_fingerprint

    shape = {
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
        "max_position_embeddings": 256,
    }  # fmt: skip
    torch.manual_seed(0)
    if name == "llama3_1":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=128_256, **shape))
    elif name == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(vocab_size=151_936, **shape))
    else:
        layers = ["sliding_attention", "full_attention"]
        config = Gemma3TextConfig(vocab_size=262_144, sliding_window=8, layer_types=layers, **shape)
        model = Gemma3ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_fingerprint(folder)
    return folder


def test_a_tiny_model_of_the_family_packs_trains_and_evaluates(
    family, corpus_table, demo_config, tmp_path, monkeypatch
):
    """The whole chain on a tiny random model with the family's real tokenizer: CFT blocks
    whose masked tokens are, token by token, [BOS] + the block's prompt + "\\n\\n" and whose
    every later token up to the padding is its own label; a training run of the tokenized
    blocks (finite losses, a held-out loss); a real lm-eval evaluation of the trained folder
    (the shared-context backend, Gemma-3's sliding window included)."""
    from datasets import load_from_disk

    from cft.data.demo_data import generate, write_jsonl
    from cft.evaluation.harness import evaluate
    from cft.packing.tokenize import load_prompts
    from cft.training.launch import train_resources
    from cft.training.recipe import Job
    from cft.training.run import train

    name, _, tokenizer, expected = family
    model_dir = tiny_model_of(name, tokenizer, tmp_path / "base")
    config = copy.deepcopy(demo_config)
    config["models"] = {name: {"source": "local", "path": str(model_dir)}}
    config["grid"] = {**config["grid"], "models": [name]}
    config["autogen"] = {**config["autogen"], "model": name}
    config["training"] = {
        "max_seq_len": SEQ, "epochs": 1, "global_batch_size": 4, "precision": "fp32",
        "activation_checkpointing": False, "eval_at_end": True, "warmup_ratio": 0.0,
    }  # fmt: skip
    config["packing"] = {**config["packing"], "mode": "packed", "prompt_format": "plain"}
    config["evaluation"] = {**config["evaluation"], "dtype": "float32", "batch_size": 8}
    config = validate_config(config)
    tokenized = tmp_path / "tokenized"
    run(
        config, "biomed", name, "cft", corpus_table=corpus_table, tokenizer_dir=model_dir,
        out_dir=tokenized,
    )  # fmt: skip

    prompts, _ = load_prompts(config, "cft")
    bos = [expected["bos"]] if expected["bos"] is not None else []
    blocks = load_from_disk(str(tokenized))["train"]
    for block in blocks:
        ids, labels = block["input_ids"], block["labels"]
        real = sum(block["attention_mask"])
        prompt = tokenizer(prompts[block["prompt_index"]] + "\n\n", add_special_tokens=False)
        prefix = bos + prompt["input_ids"]
        assert ids[: len(prefix)] == prefix
        assert labels[: len(prefix)] == [-100] * len(prefix)
        assert labels[len(prefix) : real] == ids[len(prefix) : real]  # the text: all learned
        assert labels[real:] == [-100] * (SEQ - real)

    job = Job(
        config=config, domain="biomed", model=name, method="cft",
        tokenized_dir=str(tokenized), base_model_dir=str(model_dir),
        out_dir=str(tmp_path / "trained"), checkpoint_dir=str(tmp_path / "checkpoints"),
        resources=train_resources(config, name),
    )  # fmt: skip
    record = train(job)
    assert record["optimizer_steps"] == -(-len(blocks) // 4)
    assert np.isfinite(record["final_loss"]) and np.isfinite(record["eval_loss"])
    assert record["sliding_layers"] == (1 if name == "gemma3" else 0)

    _, questions = generate("biomed", 2, 2, seed=0)
    write_jsonl(tmp_path / "results" / "demo_data" / "biomed" / "questions.jsonl", questions)
    monkeypatch.chdir(tmp_path)
    results, settings = evaluate(config, "demo_knowledge_biomed_cloze", tmp_path / "trained",
                                 device="cpu")  # fmt: skip
    assert settings["share_context"] is True
    samples = results["samples"]["demo_knowledge_biomed_cloze"]
    assert len(samples) == len(questions)
    assert all(np.isfinite(r[0][0]) for s in samples for r in s["resps"])
