"""Tokenization and packing into training sequences, per (domain, model, method): the tokenize
stage. What a block holds (the two modes, the prompt mask, BOS and EOS) is cft.packing.packer's;
this module tokenizes the corpus table, runs the packer per split, and publishes the ``DatasetDict``
folder (``train``, ``validation``: ``input_ids``, ``labels``, ``attention_mask``,
``prompt_index``) with ``stats.json``, whose token accounting reconciles exactly in both modes.

    python -m cft.packing.tokenize --config config/config.yaml --domain biomed \\
        --model smollm2-135m-instruct --method cft --out-dir results/tokenized/biomed/smol/cft
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cft.core import paths
from cft.core.cli import corpus_path, model_folder, stage_config, stage_parser
from cft.core.config import ConfigError, load_prompt_file, model_setting, resolve_path
from cft.core.fingerprints import dataset_fingerprint
from cft.core.io import (
    atomic_path,
    check_output,
    scratch_dir,
    write_json,
)
from cft.core.logging_utils import setup_logging
from cft.core.methods import FIXED_PROMPT_KINDS, METHODS
from cft.core.parquet_files import read_parquet, verify_parquet
from cft.core.provenance import config_hash
from cft.core.settings import stage_provenance, stage_settings
from cft.packing.packer import (
    PackingError,
    PackStats,
    chunk_documents,
    make_condition,
    pack,
    stable_int,
)
from cft.packing.tokens import ModelLimits, SequenceTokens, sequence_tokens

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")
# ---- the stage --------------------------------------------------------------------------------


def tokenize_documents(table: Path, tokenizer, num_proc: int, cache_dir: Path):
    """Documents of the table tokenized with datasets ``map`` (batched, ``num_proc`` workers).

    The mapped function works on Arrow batches and returns Arrow arrays, so token ids go from
    the tokenizer to the cache file without a round trip through Python rows.
    """
    import pyarrow as pa
    from datasets import Dataset

    if verify_parquet(table) == 0:  # datasets reads without checking the page checksums
        raise PackingError(f"{table}: the corpus has no documents")
    docs = Dataset.from_parquet(
        str(table), columns=["doc_id", "split", "text"], cache_dir=str(cache_dir)
    )

    backend = getattr(tokenizer, "backend_tokenizer", None)

    def encode(batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        if backend is not None:  # the Rust tokenizer without offsets: same ids, ~1.5x faster
            ids = [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        else:
            ids = tokenizer(texts, add_special_tokens=False).input_ids
        return pa.table(
            {
                "doc_id": batch.column("doc_id"),
                "split": batch.column("split"),
                "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
            }
        )

    return docs.with_format("arrow").map(
        encode,
        batched=True,
        batch_size=256,
        num_proc=num_proc if num_proc > 1 and len(docs) >= 2 * num_proc else None,
        remove_columns=["text"],
        desc="tokenizing",
    )


def iter_split(tokenized, split: str) -> Iterator[tuple[str, np.ndarray]]:
    """(doc_id, token ids) of one split, in table order, as zero-copy views of the Arrow data."""
    for batch in tokenized.with_format("arrow").iter(batch_size=1024):
        ids = batch.column("input_ids").combine_chunks()
        offsets, values = ids.offsets.to_numpy(), ids.values.to_numpy()
        doc_ids, splits = batch.column("doc_id").to_pylist(), batch.column("split").to_pylist()
        for row, (doc_id, doc_split) in enumerate(zip(doc_ids, splits, strict=True)):
            if doc_split == split:
                yield doc_id, values[offsets[row] : offsets[row + 1]]


BLOCK_SCHEMA_FIELDS = (
    ("input_ids", "int32"),
    ("labels", "int32"),
    ("attention_mask", "int8"),
)


def write_blocks(blocks: Iterator[dict], path: Path, *, batch_blocks: int = 64):
    """Stream sequences (fixed-length blocks or variable-length chunks) into an Arrow IPC file
    (datasets' own cache format), ``batch_blocks`` at a time, so memory holds one batch
    whatever the corpus size."""
    import pyarrow as pa

    schema = pa.schema(
        [(name, pa.list_(getattr(pa, kind)())) for name, kind in BLOCK_SCHEMA_FIELDS]
        + [("prompt_index", pa.int32())]
    )

    def record_batch(rows: list[dict]) -> pa.RecordBatch:
        lengths = [len(r["input_ids"]) for r in rows]
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        columns = [
            pa.ListArray.from_arrays(offsets, np.concatenate([r[name] for r in rows]))
            for name, _ in BLOCK_SCHEMA_FIELDS
        ]
        columns.append(pa.array([r["prompt_index"] for r in rows], type=pa.int32()))
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        rows: list[dict] = []
        for block in blocks:
            rows.append(block)
            if len(rows) == batch_blocks:
                writer.write_batch(record_batch(rows))
                rows = []
        if rows:
            writer.write_batch(record_batch(rows))


def largest_id(dataset) -> int:
    """The largest token id of a packed split, chunk by chunk of its Arrow column."""
    import pyarrow.compute as pc

    chunks = dataset.data.table.column("input_ids").chunks
    return max((pc.max(chunk.flatten()).as_py() or 0 for chunk in chunks), default=0)


def load_autogen_table(path: Path) -> dict[str, str]:
    table = read_parquet(path, columns=["doc_id", "prompt"])
    return dict(zip(table.doc_id, table.prompt, strict=True))


def load_prompts(config: dict, prompt_kind: str | None) -> tuple[list[str], list[str]]:
    """The texts and names of a method's fixed prompts ([] for none or generated ones)."""
    if prompt_kind not in FIXED_PROMPT_KINDS:
        return [], []
    prompt_file = load_prompt_file(resolve_path(config["prompts"][prompt_kind]), prompt_kind)
    return (
        [p["text"] for p in prompt_file["prompts"]],
        [p["name"] for p in prompt_file["prompts"]],
    )


def pack_split(
    documents: Iterator[tuple[str, np.ndarray]],
    tokenizer,
    condition,
    *,
    tokens: SequenceTokens,
    packing: dict,
    max_seq_len: int,
    arrow_file: Path,
    fingerprint: str,
    prompt_names: list[str],
):
    """One split's sequences (``packing.mode``) written to ``arrow_file``, as a memory-mapped
    Dataset with the given fingerprint, and the split's token accounting."""
    import pyarrow.compute as pc
    from datasets import Dataset
    from datasets.table import MemoryMappedTable
    from tqdm.auto import tqdm

    stats = PackStats()
    if packing["mode"] == "document":
        blocks = chunk_documents(
            documents,
            max_seq_len=max_seq_len,
            bos_id=tokens.bos,
            eos_id=tokens.separator,
            condition=condition,
            stats=stats,
            wrapping=packing["document_wrapping"],
        )
    else:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokens.separator
        blocks = pack(
            documents,
            max_seq_len=max_seq_len,
            eos_id=tokens.separator,
            pad_id=pad_id,
            condition=condition,
            stats=stats,
        )
    split = arrow_file.stem
    write_blocks(tqdm(blocks, desc=f"packing {split}", unit=" sequences"), arrow_file)
    dataset = Dataset(MemoryMappedTable.from_file(str(arrow_file)), fingerprint=fingerprint)
    if stats.text_tokens != stats.document_tokens:  # the packer's invariant
        raise AssertionError(f"{split}: {stats.text_tokens} != {stats.document_tokens}")
    # chunk by chunk: combining the column would copy every token of the split
    stored = sum(
        pc.sum(chunk.value_lengths()).as_py() or 0
        for chunk in dataset.data.table.column("input_ids").chunks
    )
    accounting = stats.as_dict(max_seq_len, total=int(stored))
    if prompt_names:
        accounting["prompt_counts"] = {
            prompt_names[int(i)] if int(i) >= 0 else "none": n
            for i, n in stats.prompt_counts.items()
        }
    return dataset, accounting


def run(
    config: dict,
    domain: str,
    model: str,
    method: str,
    *,
    corpus_table: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    autogen_table: Path | None = None,
    threads: int = 1,
) -> dict:
    """Tokenize the corpus table, pack each split for ``method`` and publish the DatasetDict
    folder with its stats.json at ``out_dir``; returns the stats record."""
    from datasets import DatasetDict
    from transformers import AutoTokenizer

    if method not in METHODS:
        raise PackingError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    check_output(out_dir, directory=True)
    packing = config["packing"]
    max_seq_len = config["training"]["max_seq_len"]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    key = f"models.{model}"
    template_kwargs = model_setting(config, model, "chat_template_kwargs")
    tokens = sequence_tokens(
        tokenizer,
        model_setting(config, model, "end_of_text"),
        key=key,
        template_kwargs=template_kwargs,
    )
    limits = ModelLimits.of(tokenizer_dir)
    if limits is not None:
        limits.check_length(max_seq_len, key)
    prompt_kind = METHODS[method].prompts
    prompts, prompt_names = load_prompts(config, prompt_kind)
    autogen = load_autogen_table(autogen_table) if METHODS[method].generated_prompts else None
    seed = stable_int(config["seed"], domain, model, method)
    num_proc = packing["num_proc"] or threads

    settings = {
        "packing": packing,
        "max_seq_len": max_seq_len,
        "prompts": prompts,
        "method": method,
        "seed": seed,
        "tokenizer": str(tokenizer_dir),
        "special_tokens": tokens.record(tokenizer),
    }
    split_stats = {}
    with scratch_dir(Path(out_dir).parent, f"{Path(out_dir).name}.pack", target=out_dir) as scratch:
        tokenized = tokenize_documents(corpus_table, tokenizer, num_proc, Path(scratch))
        splits = {}
        present = set(tokenized.unique("split"))
        if "train" not in present:
            raise PackingError(f"{corpus_table}: no training documents to pack")
        for split in (s for s in SPLITS if s in present):
            condition = make_condition(
                method, tokenizer, prompts=prompts, autogen=autogen, packing=packing,
                seed=stable_int(seed, split), template_kwargs=template_kwargs,
            )  # fmt: skip
            splits[split], split_stats[split] = pack_split(
                iter_split(tokenized, split),
                tokenizer,
                condition,
                tokens=tokens,
                packing=packing,
                max_seq_len=max_seq_len,
                arrow_file=Path(scratch) / f"{split}.arrow",
                fingerprint=config_hash([settings, split])[:32],
                prompt_names=prompt_names,
            )
        if limits is not None:
            limits.check_ids(max(largest_id(d) for d in splits.values()), tokenizer, key)
        dataset_dict = DatasetDict(splits)
        record = {
            "domain": domain,
            "model": model,
            "method": method,
            "max_seq_len": max_seq_len,
            "mode": packing["mode"],
            "prompt_format": packing["prompt_format"] if prompt_kind else None,
            "prompt_sampling": (
                packing["prompt_sampling"] if METHODS[method].fixed_prompts else None
            ),
            "special_tokens": tokens.record(tokenizer),
            "splits": split_stats,
            "fingerprint": dataset_fingerprint(dataset_dict),
            "provenance": stage_provenance(
                "tokenize",
                stage_settings(config, "tokenize", model=model, method=method),
                seed=seed,
            ),
        }
        with atomic_path(out_dir) as tmp:
            dataset_dict.save_to_disk(str(tmp))
            write_json(tmp / "stats.json", record)
    log.info(
        "%s/%s/%s: %d train blocks, fingerprint %s",
        domain, model, method, split_stats["train"]["blocks"], record["fingerprint"][:12],
    )  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, corpus=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", required=True, choices=sorted(METHODS))
    parser.add_argument(
        "--tokenizer", help=f"model folder (default: {paths.base_model_dir('{model}')})"
    )
    parser.add_argument("--autogen", help="autogen.parquet, for the generated-prompt method")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    if METHODS[args.method].generated_prompts and not args.autogen:
        raise ConfigError(f"--autogen is required for method {args.method}")
    run(
        config,
        args.domain,
        args.model,
        args.method,
        corpus_table=corpus_path(args),
        tokenizer_dir=model_folder(
            args.tokenizer or paths.base_model_dir(args.model), "--tokenizer"
        ),
        out_dir=Path(args.out_dir),
        autogen_table=Path(args.autogen) if args.autogen else None,
        threads=args.threads,
    )


if __name__ == "__main__":
    main()
