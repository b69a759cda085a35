"""Auto-generated contextual prompts (TextAdaptCFT): an instruct model writes one prompt per
training document from the paper's meta-prompt.

The generators (:mod:`cft.packing.generators`: transformers or vLLM) write the replies; this
module cleans them into prompts and runs the stage. Documents are processed in
shards of ``autogen.shard_size``; each finished shard is written atomically to
``<out>.shards/``, so a preempted job resumes where it stopped. Outputs go through
:func:`clean_generated`; unusable ones fall back to a learning-strategy prompt, and every
fallback is counted in the stats file.

    python -m cft.packing.autogen --config config/config.yaml --domain biomed \
        --out results/prompts/biomed/autogen.parquet
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from cft.core import paths
from cft.core.cli import corpus_path, model_folder, stage_config, stage_parser
from cft.core.config import autogen_model, load_prompt_file, model_setting, resolve_path
from cft.core.errors import DataFileError
from cft.core.fingerprints import recorded_fingerprint
from cft.core.io import atomic_path, check_output, write_json
from cft.core.logging_utils import setup_logging
from cft.core.methods import AUTOGEN_PROMPTS, CFT_PROMPTS
from cft.core.parquet_files import PARQUET_CHECKSUMS, read_parquet
from cft.core.provenance import config_hash
from cft.core.settings import stage_provenance, stage_settings
from cft.packing.generators import BACKENDS, VllmGenerator, build_inputs
from cft.packing.packer import stable_int

log = logging.getLogger(__name__)

FALLBACK_REASONS = ("empty", "reasoning", "too_short", "refusal", "copied_text")
# A reasoning model's thinking (Qwen3 without enable_thinking: false; DeepSeek-R1 and its
# distillations): never a prompt. An unclosed block is a reply that ran out while thinking.
_REASONING = re.compile(r"<think>.*?(</think>|$)", re.S)

# Chatty wrappers that models put around the answer.
_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok|absolutely)\b[!,.]*\s*)?"
    r"(?:here(?:'s| is| are)\b[^:\n]*[:\n]|below is\b[^:\n]*[:\n])\s*",
    re.IGNORECASE,
)
_AFFIRMATION = re.compile(r"^\s*(?:sure|certainly|of course|okay|absolutely)\b[!,.]*\s*", re.I)
_LABEL = re.compile(
    r"^\s*[#*_\s]*(?:(?:contextual\s+)?prompt|context|text)\s*[*_]*\s*:\s*[*_]*\s*", re.I
)
_REFUSAL = re.compile(
    r"\b(?:i'm sorry|i am sorry|i cannot|i can't|i'm unable|i am unable|as an ai)\b", re.I
)
_QUOTES = "\"'“”‘’«»`"
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


COPY_CHARS = 60  # a reply sharing this many consecutive characters with the document copied it


def shares_run(text: str, source: str, length: int = COPY_CHARS) -> bool:
    """Whether ``text`` and ``source`` share ``length`` or more consecutive characters.

    Any such run holds one of the windows of ``length - step + 1`` characters that start in
    ``text`` at a multiple of ``step``; each window is looked up with ``str.find`` and every
    place it occurs is extended both ways, at most to ``length``. So the cost is
    ``len(text) / step`` searches of ``source``: linear in the document, where a longest common
    substring (difflib) grows with the product of the two lengths.
    """
    step = max(length // 2, 1)
    width = length - step + 1
    for start in range(0, len(text) - width + 1, step):
        window = text[start : start + width]
        at = source.find(window)
        while at != -1:
            left = 0
            while (
                left < length - width
                and left < start
                and left < at
                and text[start - left - 1] == source[at - left - 1]
            ):
                left += 1
            right, end = 0, start + width
            while (
                left + width + right < length
                and end + right < len(text)
                and at + width + right < len(source)
                and text[end + right] == source[at + width + right]
            ):
                right += 1
            if left + width + right >= length:
                return True
            at = source.find(window, at + 1)
    return False


def clean_generated(
    raw: str, seen: str, *, min_chars: int, max_chars: int
) -> tuple[str | None, str | None, bool]:
    """Turn a model's reply into a prompt. ``seen``: the document text the generator was shown
    (what it could have copied). Returns (prompt or None, fallback reason, truncated)."""
    text = _REASONING.sub("", raw).strip()
    if not text and "<think>" in raw:
        return None, "reasoning", False
    for _ in range(3):  # wrappers can nest: 'Sure! Here is the prompt: **Prompt:** "..."'
        stripped = _LABEL.sub("", _PREAMBLE.sub("", _AFFIRMATION.sub("", text)))
        stripped = stripped.replace("**", "").strip().strip(_QUOTES).strip()
        if stripped == text:
            break
        text = stripped
    text = " ".join(text.split())
    if not text:
        return None, "empty", False
    if _REFUSAL.search(text):
        return None, "refusal", False
    if shares_run(text, seen):
        return None, "copied_text", False
    truncated = False
    if len(text) > max_chars:
        truncated = True
        ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, max_chars + 1)]
        text = text[: ends[-1]] if ends else text[:max_chars].rsplit(" ", 1)[0]
    if len(text) < min_chars:
        return None, "too_short", truncated
    return text, None, truncated


def shard_path(shards_dir: Path, index: int) -> Path:
    return shards_dir / f"shard-{index:05d}.parquet"


def shards_folder(config: dict, domain: str, out: Path, docs, model_dir: Path) -> Path:
    """Where this run's shards go: a folder keyed by everything that makes a shard (the
    generation settings and prompt files, the documents, the generator's files), so a resumed
    run reuses only shards made the same way. Shards of other settings are removed."""
    key = config_hash(
        {
            "settings": stage_settings(config, "autogen", domain=domain),
            "documents": list(docs.doc_id),
            "texts": hashlib.sha256("\0".join(docs.text).encode()).hexdigest(),
            "generator": recorded_fingerprint(model_dir),
        }
    )[:16]
    root = out.with_name(out.name + ".shards")
    root.mkdir(parents=True, exist_ok=True)
    for other in root.iterdir():
        if other.is_dir() and other.name != key:
            log.info("removing shards of other settings: %s", other)
            shutil.rmtree(other)
    (root / key).mkdir(exist_ok=True)
    return root / key


def shard_rows(part, replies: list[str], inputs: list, settings: dict, strategies, seed: int):
    """A shard's table rows: each document's cleaned prompt, or a fixed strategy (seeded per
    document) where the reply is unusable, with the reason."""
    rows = []
    for doc_id, text, reply, ids in zip(part.doc_id, part.text, replies, inputs, strict=True):
        prompt, reason, truncated = clean_generated(
            reply,
            text[: settings["max_input_chars"]],  # what build_inputs showed the generator
            min_chars=settings["min_prompt_chars"],
            max_chars=settings["max_prompt_chars"],
        )
        if prompt is None:
            prompt = strategies[stable_int(seed, doc_id) % len(strategies)]
        rows.append(
            {
                "doc_id": doc_id,
                "prompt": prompt,
                "raw": reply,
                "fallback": reason,
                "truncated": truncated,
                "input_tokens": len(ids),
            }
        )
    return rows


def run(config: dict, domain: str, corpus_table: Path, model_dir: Path, out: Path) -> dict:
    """Generate one contextual prompt per document of the corpus table, shard by shard (a killed
    run resumes from its finished shards), and publish the table and its stats record."""
    settings = config["autogen"]
    spec = load_prompt_file(resolve_path(config["prompts"][AUTOGEN_PROMPTS]), AUTOGEN_PROMPTS)
    strategies = [
        p["text"]
        for p in load_prompt_file(resolve_path(config["prompts"][CFT_PROMPTS]), CFT_PROMPTS)[
            "prompts"
        ]
    ]
    docs = read_parquet(corpus_table, columns=["doc_id", "split", "text"])
    if docs.empty:
        raise DataFileError(f"{corpus_table}: the corpus has no documents")
    seed = stable_int(config["seed"], domain, "autogen")
    check_output(out)
    shards_dir = shards_folder(config, domain, out, docs, model_dir)
    size = settings["shard_size"]
    n_shards = (len(docs) + size - 1) // size
    todo = [i for i in range(n_shards) if not shard_path(shards_dir, i).exists()]
    log.info("%d documents, %d shards, %d to generate", len(docs), n_shards, len(todo))

    started = time.perf_counter()
    generator = None
    try:
        for index in tqdm(todo, desc=f"autogen {domain}", unit="shard"):
            if generator is None:  # a fully resumed run never loads the model
                generator = BACKENDS[settings["backend"]](model_dir, settings)
                if not generator.tokenizer.chat_template:
                    raise DataFileError(
                        f"{model_dir}: autogen.model {autogen_model(config)!r} has no chat "
                        f"template (a base model), so it cannot be asked to write prompts; set "
                        f"autogen.model to an instruct model of `models`"
                    )
            part = docs.iloc[index * size : (index + 1) * size]
            inputs = build_inputs(
                generator.tokenizer,
                list(part.text),
                spec["meta_prompt"],
                spec["document_template"],
                settings["max_input_chars"],
                model_setting(config, autogen_model(config), "chat_template_kwargs"),
            )
            seeds = [stable_int(seed, doc_id, "sample") for doc_id in part.doc_id]
            raw = generator.generate(inputs, seeds, shard_seed=stable_int(seed, index))
            rows = shard_rows(part, raw, inputs, settings, strategies, seed)
            with atomic_path(shard_path(shards_dir, index)) as tmp:
                pd.DataFrame(rows).to_parquet(tmp, index=False, **PARQUET_CHECKSUMS)
    finally:
        if isinstance(generator, VllmGenerator):  # its engine runs in processes of its own
            generator.close()
    elapsed = time.perf_counter() - started

    table = pd.concat(
        [read_parquet(shard_path(shards_dir, i)) for i in range(n_shards)], ignore_index=True
    )
    if list(table.doc_id) != list(docs.doc_id):
        raise DataFileError(
            f"{shards_dir}: shards do not match the corpus {corpus_table} (was it rebuilt?); "
            f"delete the folder and rerun"
        )
    with atomic_path(out) as tmp:
        table.to_parquet(tmp, index=False, **PARQUET_CHECKSUMS)
    counts = table.fallback.value_counts().to_dict()
    record = {
        "domain": domain,
        "documents": len(table),
        "generated_this_run": sum(min(size, len(docs) - i * size) for i in todo),
        "fallbacks": {reason: int(counts.get(reason, 0)) for reason in FALLBACK_REASONS},
        "fallback_total": int(table.fallback.notna().sum()),
        "truncated": int(table.truncated.sum()),
        # replies whose reasoning block was removed before cleaning (with or without an answer)
        "reasoning_removed": int(table.raw.str.contains("<think>", regex=False).sum()),
        "mean_prompt_chars": float(table.prompt.str.len().mean()),
        "backend": settings["backend"],
        "generator_model": str(model_dir),
        "wall_seconds": elapsed,
        "provenance": stage_provenance(
            "autogen",
            stage_settings(config, "autogen", domain=domain),
            seed=seed,
            backend=settings["backend"],
            spec=spec,
        ),
    }
    write_json(out.with_name("autogen_stats.json"), record)
    # the shards only serve a resumed run; the published table holds them all
    shutil.rmtree(shards_dir.parent, ignore_errors=True)
    log.info(
        "%s: %d prompts, %d fallbacks, %.0f s", out, len(table), record["fallback_total"], elapsed
    )
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, corpus=True)
    parser.add_argument("--model-dir", help="generator folder (default: its base_models folder)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    run(
        config,
        args.domain,
        corpus_path(args),
        model_folder(args.model_dir or paths.base_model_dir(autogen_model(config)), "--model-dir"),
        Path(args.out),
    )


if __name__ == "__main__":
    main()
