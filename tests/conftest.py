"""Shared fixtures: repo paths, snakemake runs, configs and the converted packaged model."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 300, env: dict | None = None):
    """Run the real snakemake CLI of this environment; returns the CompletedProcess."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def job_counts(output: str) -> dict[str, int]:
    """Parse snakemake's 'Job stats' table into {rule: count}."""
    section = output.split("Job stats:", 1)[1]
    counts = {}
    for line in section.splitlines()[3:]:
        match = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


@pytest.fixture
def demo_config() -> dict:
    return copy.deepcopy(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


@pytest.fixture
def paper_config() -> dict:
    return copy.deepcopy(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))


@pytest.fixture(scope="session")
def converted_smollm2(tmp_path_factory) -> Path:
    """The packaged SmolLM2-135M-Instruct converted once per test session (about 30 s)."""
    from cft import base_model
    from cft.config import load_config

    out = tmp_path_factory.mktemp("base_models") / "smollm2-135m-instruct"
    base_model.run(load_config(REPO / "config" / "config.yaml"), "smollm2-135m-instruct", out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, converted_smollm2):
    """A randomly initialised 2-layer Llama with the packaged tokenizer (fast, real code)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(converted_smollm2)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
