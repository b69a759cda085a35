"""Export of the CFT training set for hosted tuning, in Gemini's supervised-tuning format.

This is not the paper's Gemini experiment: the authors tuned Gemini-1.5-Flash on content a strong
LLM wrote for the MedQA test questions their base model got wrong, with per-example prompts
(docs/fidelity.md, "Gemini"); the project does not reproduce it, and its tables show no Gemini
row. This stage writes the project's own CFT set (the corpus with the fixed contextual prompts)
for a user who wants to tune a hosted model on it: one example per text chunk, the contextual
prompt as the user turn and the chunk as the model turn:

    {"contents": [{"role": "user", "parts": [{"text": PROMPT}]},
                  {"role": "model", "parts": [{"text": CHUNK}]}]}

Chunks hold at most ``export.gemini_chunk_chars`` characters and end at a paragraph or sentence
boundary where there is one. Prompts are drawn uniformly per chunk with a seeded generator.

    python -m cft.packing.export --config config/config.yaml --domain biomed \\
        --out results/export/biomed/cft_tuning_set.gemini_format.jsonl
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cft.core.cli import corpus_path, stage_config, stage_parser
from cft.core.config import load_prompt_file, resolve_path
from cft.core.io import atomic_path, check_output, write_json
from cft.core.logging_utils import setup_logging
from cft.core.methods import CFT_PROMPTS
from cft.core.parquet_files import read_parquet
from cft.core.paths import export_stats
from cft.core.settings import stage_provenance, stage_settings
from cft.packing.packer import stable_int

_BOUNDARY = re.compile(r"\n\n|(?<=[.!?])\s")


def chunk_text(text: str, max_chars: int) -> Iterator[str]:
    """Consecutive chunks of at most ``max_chars`` that together are the whole text."""
    while len(text) > max_chars:
        cuts = [m.end() for m in _BOUNDARY.finditer(text, 0, max_chars)]
        cut = cuts[-1] if cuts else max_chars
        yield text[:cut].strip()
        text = text[cut:].lstrip()
    if text.strip():
        yield text.strip()


def gemini_example(prompt: str, chunk: str) -> dict:
    return {
        "contents": [
            {"role": "user", "parts": [{"text": prompt}]},
            {"role": "model", "parts": [{"text": chunk}]},
        ]
    }


def run(config: dict, domain: str, corpus_table: Path, out: Path) -> dict:
    for target in (out, export_stats(out)):  # both files, before any work
        check_output(target)
    prompts = [
        p["text"]
        for p in load_prompt_file(resolve_path(config["prompts"][CFT_PROMPTS]), CFT_PROMPTS)[
            "prompts"
        ]
    ]
    max_chars = config["export"]["gemini_chunk_chars"]
    docs = read_parquet(corpus_table, columns=["doc_id", "split", "text"])
    seed = stable_int(config["seed"], domain, "gemini")
    rng = np.random.default_rng(seed)
    examples = 0
    with atomic_path(out) as tmp, tmp.open("w") as f:
        for text in docs.loc[docs.split == "train", "text"]:
            for chunk in chunk_text(text, max_chars):
                prompt = prompts[int(rng.integers(len(prompts)))]
                f.write(json.dumps(gemini_example(prompt, chunk), ensure_ascii=False) + "\n")
                examples += 1
    record = {
        "domain": domain,
        "examples": examples,
        "chunk_chars": max_chars,
        "provenance": stage_provenance("export", stage_settings(config, "export"), seed=seed),
    }
    write_json(export_stats(out), record)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, corpus=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    run(stage_config(args), args.domain, corpus_path(args), Path(args.out))


if __name__ == "__main__":
    main()
