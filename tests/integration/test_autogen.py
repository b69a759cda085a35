"""TextAdaptCFT prompt generation: post-processing of realistic bad outputs, fallbacks counted,
and resume after a killed run (the tiny random Llama), and one shard of the packaged model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from conftest import REPO


def write_corpus(path: Path, n_entities: int, per_entity: int) -> Path:
    from cft.data.demo_data import generate

    docs, _ = generate("finance", n_entities, per_entity, seed=3)
    pd.DataFrame(
        {"doc_id": [d["doc_id"] for d in docs], "split": "train", "text": [d["text"] for d in docs]}
    ).to_parquet(path)
    return path


def autogen_config(tmp_path, demo_config, **autogen) -> Path:
    # the demo generator's settings on CPU (autogen.gpus: 0), with these changes
    demo_config["autogen"] = {**demo_config["autogen"], **autogen}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config))
    return config


def generate_prompts(config, corpus, model, out) -> None:
    """The stage in this process (only the run to be killed needs its own)."""
    from cft.core.config import load_config
    from cft.packing.autogen import run

    run(load_config(config), "finance", corpus, model, out)


def autogen_cmd(config, corpus, model, out):
    return [
        sys.executable, "-m", "cft.packing.autogen", "--config", str(config), "--domain", "finance",
        "--corpus", str(corpus), "--model-dir", str(model), "--out", str(out),
    ]  # fmt: skip


def test_killed_run_resumes_and_matches_uninterrupted(tmp_path, demo_config, tiny_model):
    """kill -9 after the first shard, then a rerun: the table equals an uninterrupted run's and
    only the missing shards are generated (the tiny random Llama: the resume logic, fast)."""
    corpus = write_corpus(tmp_path / "documents.parquet", 16, 3)  # 48 documents
    config = autogen_config(tmp_path, demo_config, shard_size=2, batch_size=2, max_new_tokens=16)
    n_shards = 24
    whole = tmp_path / "whole" / "autogen.parquet"
    generate_prompts(config, corpus, tiny_model, whole)
    reference = pd.read_parquet(whole)
    assert len(reference) == 48

    out = tmp_path / "killed" / "autogen.parquet"
    shards = out.with_name("autogen.parquet.shards")
    proc = subprocess.Popen(autogen_cmd(config, corpus, tiny_model, out), cwd=REPO)
    deadline = time.time() + 300
    while not list(shards.glob("*/shard-00000.parquet")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(shards.glob("*/shard-*.parquet"))  # in the folder of these settings
    assert 1 <= len(done) < n_shards and not out.exists()

    generate_prompts(config, corpus, tiny_model, out)
    assert not shards.exists()  # a published table leaves no shards behind
    pd.testing.assert_frame_equal(pd.read_parquet(out), reference)
    stats = yaml.safe_load(out.with_name("autogen_stats.json").read_text())
    assert stats["documents"] == 48
    assert stats["fallback_total"] == int(reference.fallback.notna().sum())
    assert stats["generated_this_run"] == 48 - 2 * len(done)


def test_the_packaged_model_writes_a_shard_of_prompts(tmp_path, demo_config, converted_smollm2):
    """A smoke test of the real generator: one shard of the demo's own model."""
    from cft.core.config import load_config
    from cft.packing.autogen import run

    corpus = write_corpus(tmp_path / "documents.parquet", 3, 1)
    config = load_config(autogen_config(tmp_path, demo_config, shard_size=3, max_new_tokens=48))
    stats = run(config, "finance", corpus, converted_smollm2, tmp_path / "autogen.parquet")
    table = pd.read_parquet(tmp_path / "autogen.parquet")
    assert len(table) == stats["documents"] == 3
    assert table.prompt.str.len().min() > 0
    assert stats["generated_this_run"] == 3


def test_a_generator_without_a_chat_template_is_refused_by_name(tmp_path, demo_config, tiny_model):
    """A base model (Gemma-3-270M has no chat template) cannot be asked for a prompt: the stage
    stops naming autogen.model before generating anything."""
    import shutil

    import pytest
    from transformers import AutoTokenizer

    from cft.core.errors import DataFileError

    base = tmp_path / "base-model"
    shutil.copytree(tiny_model, base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = None
    (base / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer.save_pretrained(base)
    corpus = write_corpus(tmp_path / "documents.parquet", 2, 1)
    config = autogen_config(tmp_path, demo_config, shard_size=2)
    with pytest.raises(DataFileError, match=r"autogen\.model .* has no chat template"):
        generate_prompts(config, corpus, base, tmp_path / "autogen.parquet")
    assert not (tmp_path / "autogen.parquet").exists()
