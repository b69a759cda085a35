"""TextAdaptCFT prompt generation: post-processing of realistic bad outputs, fallbacks counted,
and resume after a killed run, with the transformers backend and the packaged model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from conftest import REPO

from cft.autogen import clean_generated

DOC = (
    "Casatavi disease is a rare disorder that primarily damages the small intestine. "
    "Mutations in MPP2 are the underlying cause of Casatavi disease."
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            'Sure! Here is a contextual prompt:\n\n"Consider how genetic causes shape rare '
            'intestinal diseases."',
            "Consider how genetic causes shape rare intestinal diseases.",
        ),
        (
            "**Contextual Prompt:** Focus on how a single gene can explain a whole disease.",
            "Focus on how a single gene can explain a whole disease.",
        ),
        (
            "Here's a concise prompt for the reader: “Ask what links genes to organs.”",
            "Ask what links genes to organs.",
        ),
        ("Prompt: Think about   treatment\n choices.", "Think about treatment choices."),
    ],
)
def test_wrappers_are_stripped(raw, expected):
    prompt, reason, truncated = clean_generated(raw, DOC, min_chars=10, max_chars=400)
    assert (prompt, reason, truncated) == (expected, None, False)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ('Sure, here is the prompt: ""', "empty"),
        ("Text:", "empty"),
        ("Read it.", "too_short"),
        ("I'm sorry, but I cannot help with medical content.", "refusal"),
        ("As an AI language model, I will summarise this text for you in detail.", "refusal"),
        (
            "Casatavi disease is a rare disorder that primarily damages the small intestine.",
            "copied_text",
        ),
    ],
)
def test_unusable_outputs_fall_back(raw, reason):
    prompt, got, _ = clean_generated(raw, DOC, min_chars=15, max_chars=400)
    assert prompt is None and got == reason


def test_long_output_is_cut_at_a_sentence():
    raw = "Think about the causes of each disease. " * 30
    prompt, reason, truncated = clean_generated(raw, DOC, min_chars=10, max_chars=100)
    assert truncated and reason is None
    assert len(prompt) <= 100 and prompt.endswith(".")


# ---- the stage on the packaged model ---------------------------------------------------------


@pytest.fixture
def autogen_setup(tmp_path, demo_config, converted_smollm2):
    from cft.demo_data import generate

    docs, _ = generate("finance", 6, 2, seed=3)
    corpus = tmp_path / "documents.parquet"
    pd.DataFrame(
        {"doc_id": [d["doc_id"] for d in docs], "split": "train", "text": [d["text"] for d in docs]}
    ).to_parquet(corpus)
    demo_config["autogen"] = {
        **demo_config["autogen"],  # the demo generator on CPU (autogen.gpus: 0)
        "shard_size": 3,
        "batch_size": 3,
        "max_new_tokens": 24,
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config))
    return config, corpus, converted_smollm2


def autogen_cmd(config, corpus, model, out):
    return [
        sys.executable, "-m", "cft.autogen", "--config", str(config), "--domain", "finance",
        "--corpus", str(corpus), "--model-dir", str(model), "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_killed_run_resumes_and_matches_uninterrupted(tmp_path, autogen_setup):
    config, corpus, model = autogen_setup
    whole = tmp_path / "whole" / "autogen.parquet"
    subprocess.run(autogen_cmd(config, corpus, model, whole), check=True, cwd=REPO, timeout=600)
    reference = pd.read_parquet(whole)
    assert len(reference) == 12 and reference.prompt.str.len().min() > 0

    out = tmp_path / "killed" / "autogen.parquet"
    shards = out.with_name("autogen.parquet.shards")
    proc = subprocess.Popen(autogen_cmd(config, corpus, model, out), cwd=REPO)
    deadline = time.time() + 300
    while not list(shards.glob("*/shard-00000.parquet")) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(shards.glob("*/shard-*.parquet"))  # in the folder of these settings
    assert 1 <= len(done) < 4 and not out.exists()

    subprocess.run(autogen_cmd(config, corpus, model, out), check=True, cwd=REPO, timeout=600)
    assert not shards.exists()  # a published table leaves no shards behind
    pd.testing.assert_frame_equal(pd.read_parquet(out), reference)
    stats = yaml.safe_load(out.with_name("autogen_stats.json").read_text())
    assert stats["documents"] == 12
    assert stats["fallback_total"] == int(reference.fallback.notna().sum())
    assert stats["generated_this_run"] == 12 - 3 * len(done)


def test_shards_are_keyed_by_the_settings_that_made_them(tmp_path, demo_config):
    """A changed meta-prompt setting, temperature or token budget starts new shards (and drops
    the old ones); the same settings find the same folder again."""
    from cft.autogen import shards_folder
    from cft.config import validate_config

    validate_config(demo_config)
    docs = pd.DataFrame({"doc_id": ["a", "b"], "split": "train", "text": ["one", "two"]})
    out = tmp_path / "autogen.parquet"
    model = tmp_path / "generator"
    first = shards_folder(demo_config, "finance", out, docs, model)
    (first / "shard-00000.parquet").write_bytes(b"made with the first settings")
    assert shards_folder(demo_config, "finance", out, docs, model) == first
    assert (first / "shard-00000.parquet").exists()
    for key, value in (("temperature", 0.3), ("max_new_tokens", 7)):
        changed = {**demo_config, "autogen": {**demo_config["autogen"], key: value}}
        other = shards_folder(changed, "finance", out, docs, model)
        assert other != first and not first.exists() and not any(other.iterdir())
        first = shards_folder(demo_config, "finance", out, docs, model)
    # other documents, or another generator, are other shards too
    assert shards_folder(demo_config, "finance", out, docs.iloc[:1], model) != first
    assert shards_folder(demo_config, "finance", out, docs, tmp_path / "other") != first
