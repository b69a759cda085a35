"""The hub code against local files laid out like the hub: a fake hub serving a repo folder
(the network edge is the only thing replaced), and a real HF cache layout read offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pandas as pd
import pytest
import yaml
from conftest import REPO
from miniature.build import hub_cache

from cft.core.config import validate_config
from cft.core.hub import HubUnavailableError, fetch_model
from cft.data import corpus, download


class FakeHub:
    """Stands in for snapshot_download: serves repos from local folders in their hub layout,
    honouring allow_patterns and ignore_patterns with huggingface_hub's own filter; can fail
    after n files. Without local_dir the files land in ``cache`` (a folder per repo)."""

    def __init__(
        self, repos: dict[str, Path], fail_after: int | None = None, cache: Path | None = None
    ):
        self.repos, self.fail_after, self.calls, self.cache = repos, fail_after, [], cache

    def __call__(
        self, repo_id, *, repo_type, revision, local_dir, allow_patterns, token,
        ignore_patterns=None, **kw,
    ):  # fmt: skip
        from huggingface_hub.errors import LocalEntryNotFoundError
        from huggingface_hub.utils import filter_repo_objects

        self.calls.append({"repo_id": repo_id, "token": token, "local_dir": local_dir})
        root = self.repos[repo_id]
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        local_dir = local_dir or self.cache / repo_id
        wanted = filter_repo_objects(
            files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns
        )
        for i, rel in enumerate(wanted):
            if self.fail_after is not None and i >= self.fail_after:
                raise LocalEntryNotFoundError("Got: ConnectError: connection reset")
            dst = Path(local_dir) / rel
            if not dst.exists():  # resume: files already there are not fetched again
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(root / rel, dst)
        return str(local_dir)


@pytest.fixture
def hub_repo(tmp_path):
    """A dataset repo laid out like ywchoi/OpenMedText, with files the download must skip."""
    root = tmp_path / "hub" / "ywchoi" / "OpenMedText"
    text = "Hepatocytes metabolise drugs through cytochrome enzymes in the liver. " * 4
    for rel in ["mdpi/pharmacology/1.txt", "mdpi/pharmacology/2.txt", "textbooks/gray/ch1.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{rel}\n\n{text}")
    (root / "README.md").write_text("# OpenMedText")
    (root / "images" / "fig.png").parent.mkdir(parents=True)
    (root / "images" / "fig.png").write_bytes(b"\x89PNG")
    return root


def tiny_model_folder(folder: Path, safetensors: bool = True) -> None:
    """A tiny randomly initialised Llama with a word-level tokenizer and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "the", "liver", "is", "an", "organ"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=safetensors)
    tokenizer.save_pretrained(folder)


def run_cli(module: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    """A stage's CLI in a fresh interpreter, so HF_HOME / HF_HUB_OFFLINE apply from the start."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        cwd=REPO,
    )


def hub_model_config(tmp_path: Path, paper_config: dict) -> Path:
    config = dict(paper_config)
    config["models"] = {
        "tiny-chat": {"source": "hub", "repo_id": "acme/tiny-chat", "dtype": "float32"}
    }
    config["grid"] = {**config["grid"], "models": ["tiny-chat"]}
    config["baselines"] = {}
    config["autogen"] = {**config["autogen"], "model": "tiny-chat"}
    config["training"] = {  # the paper's per-model overrides name the Llama models
        **config["training"],
        "resources": {"default": config["training"]["resources"]["default"]},
    }
    path = tmp_path / "hub_model.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_download_corpus_then_build(monkeypatch, tmp_path, hub_repo, demo_config):
    hub = FakeHub({"ywchoi/OpenMedText": hub_repo})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    source = {"type": "openmedtext", "repo_id": "ywchoi/OpenMedText", "revision": "main"}
    out = tmp_path / "resources" / "corpora" / "biomed"
    download.download_corpus("biomed", source, out)

    assert hub.calls[0]["token"] == "hf_test_token"  # only from HF_TOKEN
    assert (out / "mdpi" / "pharmacology" / "1.txt").is_file()
    assert not (out / "images").exists()  # not a pattern the source needs
    assert json.loads((out / "cft_download.json").read_text())["files"] == 4
    assert not out.with_name("biomed.partial").exists()

    demo_config["domains"]["biomed"]["source"] = {**source, "exclude": ["textbooks/*"]}
    demo_config["corpus"] = {"min_chars": 10, "validation_fraction": 0.0}
    validate_config(demo_config)
    stats = corpus.run(demo_config, "biomed", raw_dir=out, out_dir=tmp_path / "corpus")
    assert stats["documents_out"] == 2 and stats["dropped"]["excluded"]["documents"] == 1
    table = pd.read_parquet(tmp_path / "corpus" / "documents.parquet")
    assert list(table.category) == ["mdpi", "mdpi"]


def test_no_token_means_anonymous(monkeypatch, tmp_path, hub_repo):
    hub = FakeHub({"ywchoi/OpenMedText": hub_repo})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    source = {"type": "openmedtext", "repo_id": "ywchoi/OpenMedText", "revision": "main"}
    download.download_corpus("biomed", source, tmp_path / "biomed")
    assert hub.calls[0]["token"] is False  # never a token stored by `huggingface-cli login`


def test_interrupted_download_resumes(monkeypatch, tmp_path, hub_repo):
    source = {"type": "openmedtext", "repo_id": "ywchoi/OpenMedText", "revision": "main"}
    out = tmp_path / "biomed"
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", FakeHub({source["repo_id"]: hub_repo}, fail_after=2)
    )
    with pytest.raises(HubUnavailableError, match="download_corpora"):
        download.download_corpus("biomed", source, out)
    assert not out.exists()  # no half-downloaded corpus is mistaken for a complete one
    partial = out.with_name("biomed.partial")
    assert len([p for p in partial.rglob("*") if p.is_file()]) == 2

    resumed = FakeHub({source["repo_id"]: hub_repo})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", resumed)
    download.download_corpus("biomed", source, out)
    assert len(list(out.rglob("*.txt"))) == 3 and not partial.exists()


def test_download_model_manifest(tmp_path, paper_config):
    tiny_model_folder(tmp_path / "tiny")
    commit = hub_cache(tmp_path / "hf_home", "acme/tiny-chat", tmp_path / "tiny")
    config = hub_model_config(tmp_path, paper_config)
    manifest = tmp_path / "tiny-chat.json"
    env = {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = run_cli(
        "cft.data.download", "model", "--config", str(config), "--model", "tiny-chat",
        "--manifest", str(manifest), env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(manifest.read_text())
    assert record["snapshot"].endswith(commit)
    assert "model.safetensors" in record["files"]


def test_a_model_download_takes_one_copy_of_the_weights(monkeypatch, tmp_path):
    """A repo laid out like Mistral-7B-Instruct-v0.3 and Llama-3.1-8B-Instruct together: the
    transformers shards with their index, a consolidated copy for mistral-inference, and Meta's
    original/ folder. Only what transformers reads is fetched."""
    root = tmp_path / "hub" / "acme" / "chat-v3"
    files = {
        "config.json": "{}",
        "generation_config.json": "{}",
        "model.safetensors.index.json": "{}",
        "model-00001-of-00002.safetensors": "w1",
        "model-00002-of-00002.safetensors": "w2",
        "consolidated.safetensors": "w1w2",
        "params.json": "{}",
        "tokenizer.json": "{}",
        "tokenizer_config.json": "{}",
        "tokenizer.model": "spm",
        "original/consolidated.00.pth": "w1w2",
        "original/params.json": "{}",
        "original/tokenizer.model": "tiktoken",
        "README.md": "# chat",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    hub = FakeHub({"acme/chat-v3": root}, cache=tmp_path / "cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub)
    folder = fetch_model("chat-v3", "acme/chat-v3", "main")
    fetched = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert fetched == {
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "params.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
    }


@pytest.mark.parametrize("kind", ["jsonl", "datasets"])
def test_a_users_hub_dataset_is_downloaded_then_built(monkeypatch, tmp_path, demo_config, kind):
    """A user's corpus as a hub dataset repo (its README, a data/ folder of shards, a picture
    the source does not read): the download takes the files the source reads, and the corpus
    stage reads them from that snapshot."""
    root = tmp_path / "hub" / "me" / "rulings"
    text = "The court held that the contract was void for want of consideration. " * 3
    rows = [{"id": f"r{i}", "text": f"Ruling {i}. {text}"} for i in range(4)]
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# rulings")
    (root / "figure.png").write_bytes(b"\x89PNG")
    if kind == "jsonl":
        for shard in range(2):
            lines = [json.dumps(r) for r in rows[2 * shard : 2 * shard + 2]]
            (root / "data" / f"part-{shard}.jsonl").write_text("\n".join(lines) + "\n")
        source = {"type": "jsonl", "repo_id": "me/rulings", "include": ["data/*.jsonl"],
                  "id_field": "id"}  # fmt: skip
    else:
        pd.DataFrame(rows).to_parquet(root / "data" / "train-00000-of-00001.parquet")
        source = {"type": "datasets", "repo_id": "me/rulings", "id_column": "id"}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", FakeHub({"me/rulings": root}))
    demo_config["domains"]["biomed"]["source"] = source
    demo_config["corpus"] = {"min_chars": 10, "validation_fraction": 0.0}
    config = validate_config(demo_config)
    out = tmp_path / "resources" / "corpora" / "biomed"
    download.download_corpus("biomed", config["domains"]["biomed"]["source"], out)
    assert not (out / "figure.png").exists()
    stats = corpus.run(config, "biomed", raw_dir=out, out_dir=tmp_path / "corpus")
    assert stats["documents_out"] == 4
    table = pd.read_parquet(tmp_path / "corpus" / "documents.parquet")
    assert sorted(table.doc_id) == ["r0", "r1", "r2", "r3"]
