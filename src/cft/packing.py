"""Tokenization and packing into training sequences, per (domain, model, method).

Two modes (``packing.mode``):

``document`` (the authors' released code, vectorlm's working ``partial`` packing): every
document is chunked on its own (:func:`chunk_documents`). ``[BOS]`` + prompt + separator and
the text are tokenized separately and concatenated with the document's EOS; that stream is cut
into pieces of ``max_seq_len`` minus two slots, and every piece becomes ``[BOS] piece [EOS]``.
Only a document's first piece carries the prompt; no sequence holds two documents, so no
attention crosses a document boundary; every piece's EOS is a label, even in the middle of a
document; prompt tokens are label -100. The last piece of a document is short: sequences are
stored at their own length and padded per micro-batch at training time (to the longest
sequence of the micro-batch, not to ``max_seq_len``).

``packed`` (the project's alternative): every block holds exactly ``max_seq_len`` tokens (only
the last block of a split is padded):

- ``cpt`` (and ``chat``, whose blocks measure the untrained model's held-out loss): ``[BOS]`` then
  the next slice of the document stream, where documents are separated by EOS.
- ``cft``, ``negcft``, ``autocft``: ``[BOS] + contextual prompt + separator`` then the next slice
  of the stream, so every block is conditioned on a prompt. Prompt tokens get label -100: the
  loss is on the text only. Prompt and text are tokenized separately and the ids concatenated,
  so the mask boundary is exact. The prompt is drawn uniformly per block (seeded), or per
  document, or (``autocft``) taken from the generated prompt of the block's first document.

BOS is added only when the tokenizer adds one itself (Llama-2's ``<s>``; SmolLM2 has none).
With ``prompt_format: chat`` the block is the model's chat template with the prompt as the user
turn and the text as the assistant turn; the template's tokens are masked as well.

Outputs a datasets ``DatasetDict`` folder (``train``, ``validation``) with ``input_ids``,
``labels``, ``attention_mask`` and ``prompt_index``, plus ``stats.json``; the token accounting
reconciles exactly in both modes.

    python -m cft.packing --config config/config.yaml --domain biomed \\
        --model smollm2-135m-instruct --method cft --out-dir results/tokenized/biomed/smol/cft
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cft import paths
from cft.cli import corpus_path, model_folder, stage_config, stage_parser
from cft.config import METHOD_PROMPTS, ConfigError, load_prompt_file, resolve_path
from cft.fingerprints import dataset_fingerprint
from cft.io import atomic_path, check_output, scratch_dir, write_json
from cft.logging_utils import setup_logging
from cft.provenance import config_hash, provenance

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")
TEXT_SENTINEL = "\u0000CFT_TEXT\u0000"


class PackingError(ValueError):
    """The inputs cannot be packed as configured; the message names the culprit."""


@dataclass(frozen=True)
class Conditioning:
    """Tokens around a block's text: ``prefix`` before it, ``suffix`` after it (both masked)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...] = ()
    prompt_index: int = -1


def tokenizer_bos(tokenizer) -> int | None:
    """The BOS id if the tokenizer prepends one by itself, else None."""
    ids = tokenizer("a").input_ids
    bos = tokenizer.bos_token_id
    return bos if bos is not None and ids and ids[0] == bos else None


def prompt_conditioning(
    tokenizer, text: str | None, *, prompt_format: str, separator: str, index: int = -1
) -> Conditioning:
    """Tokenize the conditioning of a block: nothing but BOS (text None), or a prompt."""
    bos = tokenizer_bos(tokenizer)
    head = (bos,) if bos is not None else ()
    if text is None:
        return Conditioning(prefix=head)
    if prompt_format == "plain":
        ids = tokenizer(text + separator, add_special_tokens=False).input_ids
        return Conditioning(prefix=head + tuple(ids), prompt_index=index)
    if prompt_format == "chat":
        if not tokenizer.chat_template:
            raise PackingError(
                "packing.prompt_format is 'chat' but the tokenizer has no chat template; "
                "use prompt_format: plain"
            )
        messages = [
            {"role": "user", "content": text},
            {"role": "assistant", "content": TEXT_SENTINEL},
        ]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        before, _, after = rendered.partition(TEXT_SENTINEL)
        prefix = tokenizer(before, add_special_tokens=False).input_ids
        suffix = tokenizer(after, add_special_tokens=False).input_ids if after else []
        return Conditioning(prefix=tuple(prefix), suffix=tuple(suffix), prompt_index=index)
    raise PackingError(f"unknown prompt_format {prompt_format!r}; expected 'plain' or 'chat'")


def stable_int(*parts) -> int:
    """A 64-bit integer from strings/ints, identical on every machine and Python run."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


# ---- the packer -------------------------------------------------------------------------------


@dataclass
class PackStats:
    documents: int = 0
    document_tokens: int = 0  # document tokens plus one EOS per document
    text_tokens: int = 0  # of those, placed in blocks (must equal document_tokens)
    prompt_tokens: int = 0  # BOS, prompt, separator and template tokens (label -100)
    pad_tokens: int = 0
    blocks: int = 0
    prompt_counts: dict = field(default_factory=dict)

    def as_dict(self, max_seq_len: int, total: int | None = None) -> dict:
        """``total``: the stored tokens (every block is ``max_seq_len`` in the packed mode;
        document chunks are stored at their own length, padding comes at batch time)."""
        total = self.blocks * max_seq_len if total is None else total
        return {
            "documents": self.documents,
            "document_tokens": self.document_tokens,
            "text_tokens": self.text_tokens,
            "prompt_tokens": self.prompt_tokens,
            "pad_tokens": self.pad_tokens,
            "total_tokens": total,
            "blocks": self.blocks,
            "loss_bearing_fraction": self.text_tokens / total if total else 0.0,
            "non_pad_fraction": (total - self.pad_tokens) / total if total else 0.0,
            "prompt_counts": dict(sorted(self.prompt_counts.items())),
        }


def pack(
    documents: Iterator[tuple[str, np.ndarray]],
    *,
    max_seq_len: int,
    eos_id: int,
    pad_id: int,
    condition: Callable[[int, str], Conditioning],
    stats: PackStats,
) -> Iterator[dict[str, np.ndarray | int]]:
    """Pack a stream of (doc_id, token ids) into blocks of exactly ``max_seq_len`` tokens.

    ``condition(block_index, doc_id)`` gives the conditioning of a block from the document the
    block starts in. Every document token (and one EOS after each document) lands in exactly
    one block; only the last block is padded. Blocks are NumPy arrays (int32 ids and labels,
    int8 attention mask), so a block costs a few array copies, not a Python loop per token.
    """
    cond: Conditioning | None = None
    text = np.empty(max_seq_len, dtype=np.int32)
    filled = capacity = 0
    eos = np.array([eos_id], dtype=np.int32)

    def emit() -> dict[str, np.ndarray | int]:
        prefix, suffix = len(cond.prefix), len(cond.suffix)
        used = prefix + filled + suffix
        pad = max_seq_len - used
        stats.blocks += 1
        stats.text_tokens += filled
        stats.prompt_tokens += prefix + suffix
        stats.pad_tokens += pad
        stats.prompt_counts[cond.prompt_index] = stats.prompt_counts.get(cond.prompt_index, 0) + 1
        input_ids = np.full(max_seq_len, pad_id, dtype=np.int32)
        input_ids[:prefix] = cond.prefix
        input_ids[prefix : prefix + filled] = text[:filled]
        input_ids[prefix + filled : used] = cond.suffix
        labels = np.full(max_seq_len, -100, dtype=np.int32)
        labels[prefix : prefix + filled] = text[:filled]
        attention_mask = np.zeros(max_seq_len, dtype=np.int8)
        attention_mask[:used] = 1
        return {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": attention_mask,
            "prompt_index": cond.prompt_index,
        }

    for doc_id, ids in documents:
        stats.documents += 1
        stream = np.concatenate([np.asarray(ids, dtype=np.int32), eos])
        stats.document_tokens += len(stream)
        pos = 0
        while pos < len(stream):
            if cond is None:
                cond = condition(stats.blocks, doc_id)
                capacity = max_seq_len - len(cond.prefix) - len(cond.suffix)
                if capacity <= 0:
                    raise PackingError(
                        f"prompt {cond.prompt_index} takes {len(cond.prefix) + len(cond.suffix)} "
                        f"tokens, which leaves no room for text in a block of max_seq_len "
                        f"{max_seq_len}; shorten the prompt or raise training.max_seq_len"
                    )
            take = min(capacity - filled, len(stream) - pos)
            text[filled : filled + take] = stream[pos : pos + take]
            filled += take
            pos += take
            if filled == capacity:
                yield emit()
                cond, filled = None, 0
    if cond is not None and filled:
        yield emit()


def chunk_documents(
    documents: Iterator[tuple[str, np.ndarray]],
    *,
    max_seq_len: int,
    bos_id: int | None,
    eos_id: int,
    condition: Callable[[int, str], Conditioning],
    stats: PackStats,
) -> Iterator[dict[str, np.ndarray | int]]:
    """The ``document`` mode, as vectorlm's ``preprocess_data.py`` (9045f08) prepares data.

    A document becomes the stream ``[BOS] prompt text [EOS]`` (the authors wrap the document
    string in BOS and EOS before tokenizing), with labels ``BOS, -100 x prompt, text, EOS``:
    the document's own BOS and EOS are targets, the prompt is not. The stream is cut into
    pieces of ``max_seq_len`` minus two slots, and each piece is wrapped again as
    ``[BOS] piece [EOS]`` (the wrapper EOS is a target, the wrapper BOS opens the sequence).
    So a document's first sequence starts with two BOS and its last ends with two EOS; only
    the first piece holds the prompt; the last piece is stored unpadded.
    ``condition(document_index, doc_id)`` gives the document's prompt.
    """
    head = [bos_id] if bos_id is not None else []
    room = max_seq_len - len(head) - 1  # the wrapper's BOS and EOS slots
    for index, (doc_id, ids) in enumerate(documents):
        cond = condition(index, doc_id)
        if cond.suffix:
            raise PackingError(
                "packing.mode 'document' takes plain prompts (packing.prompt_format: plain); "
                "the chat format's closing template tokens have no place in a chunk"
            )
        prompt = list(cond.prefix[len(head) :])
        if len(head) + len(prompt) >= room:
            raise PackingError(
                f"prompt {cond.prompt_index} takes {len(prompt)} tokens, which leaves no room "
                f"for text in a sequence of max_seq_len {max_seq_len}; shorten the prompt or "
                f"raise training.max_seq_len"
            )
        text = np.asarray(ids, dtype=np.int32)
        stream = np.concatenate([head, prompt, text, [eos_id]]).astype(np.int32)
        targets = np.concatenate([head, [-100] * len(prompt), text, [eos_id]]).astype(np.int32)
        stats.documents += 1
        stats.prompt_counts[cond.prompt_index] = stats.prompt_counts.get(cond.prompt_index, 0) + 1
        for start in range(0, len(stream), room):
            input_ids = np.concatenate([head, stream[start : start + room], [eos_id]])
            labels = np.concatenate([[-100] * len(head), targets[start : start + room], [eos_id]])
            input_ids, labels = input_ids.astype(np.int32), labels.astype(np.int32)
            loss_tokens = int(np.count_nonzero(labels != -100))
            stats.blocks += 1
            stats.document_tokens += loss_tokens
            stats.text_tokens += loss_tokens
            stats.prompt_tokens += len(input_ids) - loss_tokens
            yield {
                "input_ids": input_ids,
                "labels": labels,
                "attention_mask": np.ones(len(input_ids), dtype=np.int8),
                "prompt_index": cond.prompt_index,
            }


# ---- choosing prompts -------------------------------------------------------------------------


def make_condition(
    method: str,
    tokenizer,
    *,
    prompts: list[str],
    autogen: dict[str, str] | None,
    packing: dict,
    seed: int,
) -> Callable[[int, str], Conditioning]:
    """The block -> conditioning function for a method."""
    fmt, sep = packing["prompt_format"], packing["prompt_separator"]
    if METHOD_PROMPTS[method] is None:
        plain = prompt_conditioning(tokenizer, None, prompt_format="plain", separator=sep)
        return lambda block, doc_id: plain
    if method == "autocft":
        if autogen is None:
            raise PackingError("method 'autocft' needs the generated prompt table")
        cache: dict[str, Conditioning] = {}

        def from_table(block: int, doc_id: str) -> Conditioning:
            if doc_id not in autogen:
                raise PackingError(f"no generated prompt for document {doc_id!r}")
            if doc_id not in cache:
                cache[doc_id] = prompt_conditioning(
                    tokenizer, autogen[doc_id], prompt_format=fmt, separator=sep, index=0
                )
            return cache[doc_id]

        return from_table
    tokenized = [
        prompt_conditioning(tokenizer, text, prompt_format=fmt, separator=sep, index=i)
        for i, text in enumerate(prompts)
    ]
    if packing["prompt_sampling"] == "per_document":
        return lambda block, doc_id: tokenized[stable_int(seed, doc_id) % len(tokenized)]
    rng = np.random.default_rng(seed)
    return lambda block, doc_id: tokenized[int(rng.integers(len(tokenized)))]


# ---- the stage --------------------------------------------------------------------------------


def tokenize_documents(table: Path, tokenizer, num_proc: int, cache_dir: Path):
    """Documents of the table tokenized with datasets ``map`` (batched, ``num_proc`` workers).

    The mapped function works on Arrow batches and returns Arrow arrays, so token ids go from
    the tokenizer to the cache file without a round trip through Python rows.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    if pq.ParquetFile(table).metadata.num_rows == 0:
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


def load_autogen_table(path: Path) -> dict[str, str]:
    import pandas as pd

    table = pd.read_parquet(path, columns=["doc_id", "prompt"])
    return dict(zip(table.doc_id, table.prompt, strict=True))


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
    import pyarrow.compute as pc
    from datasets import Dataset, DatasetDict
    from datasets.table import MemoryMappedTable
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    if method not in METHOD_PROMPTS:
        raise PackingError(f"unknown method {method!r}; expected one of {list(METHOD_PROMPTS)}")
    check_output(out_dir, directory=True)
    packing = config["packing"]
    max_seq_len = config["training"]["max_seq_len"]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    prompt_kind = METHOD_PROMPTS[method]
    prompts: list[str] = []
    prompt_names: list[str] = []
    if prompt_kind in ("cft", "negative"):
        prompt_file = load_prompt_file(resolve_path(config["prompts"][prompt_kind]), prompt_kind)
        prompts = [p["text"] for p in prompt_file["prompts"]]
        prompt_names = [p["name"] for p in prompt_file["prompts"]]
    autogen = load_autogen_table(autogen_table) if method == "autocft" else None
    seed = stable_int(config["seed"], domain, model, method)
    num_proc = packing["num_proc"] or threads

    settings = {
        "packing": packing,
        "max_seq_len": max_seq_len,
        "prompts": prompts,
        "method": method,
        "seed": seed,
        "tokenizer": str(tokenizer_dir),
    }
    split_stats = {}
    with scratch_dir(Path(out_dir).parent, f"{Path(out_dir).name}.pack") as scratch:
        tokenized = tokenize_documents(corpus_table, tokenizer, num_proc, Path(scratch))
        splits = {}
        present = set(tokenized.unique("split"))
        if "train" not in present:
            raise PackingError(f"{corpus_table}: no training documents to pack")
        for split in (s for s in SPLITS if s in present):
            stats = PackStats()
            condition = make_condition(
                method,
                tokenizer,
                prompts=prompts,
                autogen=autogen,
                packing=packing,
                seed=stable_int(seed, split),
            )

            if packing["mode"] == "document":
                blocks = chunk_documents(
                    iter_split(tokenized, split),
                    max_seq_len=max_seq_len,
                    bos_id=tokenizer_bos(tokenizer),
                    eos_id=eos_id,
                    condition=condition,
                    stats=stats,
                )
            else:
                blocks = pack(
                    iter_split(tokenized, split),
                    max_seq_len=max_seq_len,
                    eos_id=eos_id,
                    pad_id=pad_id,
                    condition=condition,
                    stats=stats,
                )
            arrow_file = Path(scratch) / f"{split}.arrow"
            write_blocks(tqdm(blocks, desc=f"packing {split}", unit=" sequences"), arrow_file)
            dataset = Dataset(
                MemoryMappedTable.from_file(str(arrow_file)),
                fingerprint=config_hash([settings, split])[:32],
            )
            if stats.text_tokens != stats.document_tokens:  # the packer's invariant
                raise AssertionError(f"{split}: {stats.text_tokens} != {stats.document_tokens}")
            splits[split] = dataset
            # chunk by chunk: combining the column would copy every token of the split
            stored = sum(
                pc.sum(chunk.value_lengths()).as_py() or 0
                for chunk in dataset.data.table.column("input_ids").chunks
            )
            split_stats[split] = stats.as_dict(max_seq_len, total=int(stored))
            if prompt_names:
                split_stats[split]["prompt_counts"] = {
                    prompt_names[int(i)] if int(i) >= 0 else "none": n
                    for i, n in stats.prompt_counts.items()
                }
        dataset_dict = DatasetDict(splits)
        record = {
            "domain": domain,
            "model": model,
            "method": method,
            "max_seq_len": max_seq_len,
            "mode": packing["mode"],
            "prompt_format": packing["prompt_format"] if prompt_kind else None,
            "prompt_sampling": (
                packing["prompt_sampling"] if prompt_kind in ("cft", "negative") else None
            ),
            "splits": split_stats,
            "fingerprint": dataset_fingerprint(dataset_dict),
            "provenance": provenance(settings, seed=seed),
        }
        with atomic_path(out_dir) as tmp:
            dataset_dict.save_to_disk(str(tmp))
            write_json(tmp / "stats.json", record)
    log.info(
        "%s/%s/%s: %d train blocks, fingerprint %s",
        domain,
        model,
        method,
        split_stats["train"]["blocks"],
        record["fingerprint"][:12],
    )
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, corpus=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", required=True, choices=sorted(METHOD_PROMPTS))
    parser.add_argument(
        "--tokenizer", help=f"model folder (default: {paths.base_model_dir('{model}')})"
    )
    parser.add_argument("--autogen", help="autogen.parquet, for autocft")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    if args.method == "autocft" and not args.autogen:
        raise ConfigError("--autogen is required for method autocft")
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
