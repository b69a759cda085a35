"""The corpus stage: raw source -> one canonical, cleaned, de-duplicated, split document table.

Sources (``domains.<name>.source.type`` in config):

- ``openmedtext``: a folder laid out like the hub repo ywchoi/OpenMedText, one document per
  ``.txt`` file in category folders; files matching ``exclude`` globs are dropped (licences).
- ``financial_news``: a folder laid out like ashraq/financial-news-articles, parquet shards with
  title, text and url; a document is the title and the text.
- ``demo``: the project's fictional-knowledge ``documents.jsonl`` (see cft.data.demo_data).

Output: ``documents.parquet`` (doc_id, source, category, title, origin, split, n_chars, text) and
``stats.json`` (documents and characters in, dropped by reason, out). The table is streamed to
disk in batches, so memory does not grow with the corpus; every dropped document is counted.

    python -m cft.data.corpus --config config/config.yaml --domain biomed \\
        --raw results/demo_data/biomed --out-dir results/corpus/biomed
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from cft.core.cli import stage_config, stage_parser
from cft.core.config import domain_source
from cft.core.errors import CftError
from cft.core.io import atomic_path, check_output, non_regular_kind, write_json
from cft.core.logging_utils import setup_logging
from cft.core.parquet_files import PARQUET_CHECKSUMS, parquet_error
from cft.core.settings import stage_provenance, stage_settings

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("category", pa.string()),
        ("title", pa.string()),
        ("origin", pa.string()),
        ("split", pa.string()),
        ("n_chars", pa.int64()),
        ("text", pa.string()),
    ]
)
DROP_REASONS = ("invalid_utf8", "excluded", "empty", "too_short", "too_long", "duplicate")
WRITE_BATCH = 2048

# Hub files each source needs (used by the download rule).
DOWNLOAD_PATTERNS = {
    "openmedtext": ["*.[tT][xX][tT]", "*.md"],
    "financial_news": ["*.parquet", "*.md"],
}


class CorpusError(CftError, RuntimeError):
    """The raw corpus cannot be read as configured; the message names the file."""


@dataclass
class RawDocument:
    doc_id: str
    text: str | None  # None: the file could not be decoded
    origin: str
    category: str | None = None
    title: str | None = None
    n_chars_raw: int = 0
    drop: str | None = None  # set by the reader for drops it decides (excluded, invalid_utf8)


# ---- cleaning ---------------------------------------------------------------------------------

_HSPACE = re.compile(r"[^\S\n]+")  # any whitespace but newline
# Control characters, and the byte-order mark (U+FEFF), which some editors put at the start of
# a UTF-8 file: invisible, it would keep a copy from being found a duplicate.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """NFC, no control characters, single spaces, at most one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


def split_of(doc_id: str, validation_fraction: float) -> str:
    """Deterministic split from the doc_id alone: stable across runs, machines and configs
    (raising the fraction only moves documents from train to validation, never back)."""
    bucket = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2**64
    return "validation" if bucket < validation_fraction else "train"


# ---- readers ----------------------------------------------------------------------------------


def _data_files(root: Path, suffix: str) -> list[Path]:
    """Files under root whose suffix is ``suffix`` in any case (.txt, .TXT), in a stable order.

    Symlinked folders are followed (once each: a link back up is not a loop); hidden folders
    (.cache, .git) are skipped. A dangling link (a blob missing from a hub snapshot) is an
    error naming it, and so is a data file that is not a regular file (a FIFO would block the
    reader); the files of other kinds are counted in the log, so nothing under root is left
    out unseen."""
    files, others, seen = [], [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in names:
            path = Path(folder) / name
            if name.startswith("."):
                continue
            if not path.exists():
                raise CorpusError(
                    f"{path}: a link to a missing file (a blob missing from the hub snapshot?); "
                    "download the corpus again or remove the link"
                )
            if path.suffix.lower() != suffix:
                others.append(path)  # never opened
                continue
            kind = non_regular_kind(path)
            if kind is not None:  # opening a FIFO would block the stage for ever
                raise CorpusError(
                    f"{path}: {kind}, not a regular {suffix} file; remove it from {root} or "
                    "replace it with the file itself"
                )
            files.append(path)
    if others:
        shown = ", ".join(sorted(p.relative_to(root).as_posix() for p in others)[:5])
        log.info("%s: %d file(s) that are not %s left out: %s", root, len(others), suffix, shown)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_openmedtext(root: Path, exclude: list[str], on_invalid_utf8: str) -> Iterator[RawDocument]:
    files = _data_files(root, ".txt")
    if not files:
        raise CorpusError(f"{root}: no .txt files found (expected the ywchoi/OpenMedText layout)")
    for path in files:
        rel = path.relative_to(root).as_posix()
        category = rel.split("/")[0] if "/" in rel else None
        doc = RawDocument(doc_id=rel, text=None, origin=rel, category=category)
        if any(fnmatch.fnmatch(rel, pattern) for pattern in exclude):
            doc.drop = "excluded"
            yield doc
            continue
        data = path.read_bytes()
        try:
            doc.text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            if on_invalid_utf8 == "error":
                raise CorpusError(
                    f"{path}: not valid UTF-8 ({err.reason} at byte {err.start}); fix or remove "
                    f"the file, or set corpus.on_invalid_utf8: skip to count and skip it"
                ) from None
            log.warning("skipping %s: not valid UTF-8 (byte %d)", path, err.start)
            doc.drop = "invalid_utf8"
            doc.n_chars_raw = len(data)
            yield doc
            continue
        doc.n_chars_raw = len(doc.text)
        yield doc


def _checked_batches(parquet, shard: Path, columns: list[str]) -> Iterator:
    """The shard's record batches; a damaged page stops the stage naming the shard."""
    try:
        yield from parquet.iter_batches(columns=columns, batch_size=WRITE_BATCH)
    except (OSError, pa.ArrowException) as err:
        raise parquet_error(shard, err) from None


def read_financial_news(root: Path) -> Iterator[RawDocument]:
    shards = _data_files(root, ".parquet")
    if not shards:
        raise CorpusError(
            f"{root}: no .parquet files found (expected the ashraq/financial-news-articles layout)"
        )
    for shard in shards:
        rel = shard.relative_to(root).as_posix()
        try:
            parquet = pq.ParquetFile(shard, page_checksum_verification=True)
        except (pa.ArrowInvalid, OSError) as err:
            raise CorpusError(f"{shard}: not a readable parquet file ({err})") from None
        schema = parquet.schema_arrow
        missing = {"title", "text"} - set(schema.names)
        if missing:
            raise CorpusError(f"{shard}: missing column(s) {sorted(missing)}")
        columns = [c for c in ("title", "text", "url") if c in schema.names]
        for column in columns:
            kind = schema.field(column).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                    or pa.types.is_null(kind)):  # fmt: skip
                raise CorpusError(
                    f"{shard}: column {column!r} holds {kind}, expected strings (the "
                    f"ashraq/financial-news-articles schema); convert it to text first"
                )
        row = 0
        for batch in _checked_batches(parquet, shard, columns):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                title, body = data["title"][i] or "", data["text"][i] or ""
                text = f"{title}\n\n{body}" if title and body else title or body
                yield RawDocument(
                    doc_id=f"{rel}#{row}",
                    text=text,
                    origin=(data.get("url") or [None] * batch.num_rows)[i] or f"{rel}#{row}",
                    title=title or None,
                    n_chars_raw=len(text),
                )
                row += 1


def read_demo(root: Path) -> Iterator[RawDocument]:
    path = root / "documents.jsonl"
    kind = non_regular_kind(path)
    if kind == "not found":
        raise CorpusError(f"{path}: demo documents not found (run the generate_demo_data rule)")
    if kind is not None:
        raise CorpusError(f"{path}: {kind}, not the demo's documents file")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                doc_id, text = row["doc_id"], row["text"]
            except (json.JSONDecodeError, KeyError) as err:
                raise CorpusError(f"{path}:{line_no}: not a document record ({err})") from None
            if not isinstance(text, str) or not isinstance(doc_id, str):
                raise CorpusError(
                    f"{path}:{line_no}: 'doc_id' and 'text' must be strings, got "
                    f"{type(doc_id).__name__} and {type(text).__name__}"
                )
            yield RawDocument(
                doc_id=doc_id,
                text=text,
                origin=f"documents.jsonl:{line_no}",
                category=row.get("entity"),
                n_chars_raw=len(text),
            )


def read_source(source: dict, raw_dir: Path, on_invalid_utf8: str) -> Iterator[RawDocument]:
    kind = source["type"]
    if not raw_dir.is_dir():
        raise CorpusError(f"{raw_dir}: raw corpus folder for source type {kind!r} does not exist")
    if kind == "openmedtext":
        return read_openmedtext(raw_dir, source.get("exclude", []), on_invalid_utf8)
    if kind == "financial_news":
        return read_financial_news(raw_dir)
    if kind == "demo":
        return read_demo(raw_dir)
    raise CorpusError(f"unknown corpus source type {kind!r}")


# ---- building the table -----------------------------------------------------------------------


@dataclass
class CorpusStats:
    documents_in: int = 0
    chars_in: int = 0
    dropped: dict = field(
        default_factory=lambda: {r: {"documents": 0, "chars": 0} for r in DROP_REASONS}
    )
    documents_out: int = 0
    chars_out: int = 0
    splits: dict = field(default_factory=lambda: {"train": 0, "validation": 0})

    def drop(self, reason: str, chars: int) -> None:
        self.dropped[reason]["documents"] += 1
        self.dropped[reason]["chars"] += chars

    def as_dict(self) -> dict:
        return {
            "documents_in": self.documents_in,
            "chars_in": self.chars_in,
            "dropped": self.dropped,
            "documents_out": self.documents_out,
            "chars_out": self.chars_out,
            "splits": self.splits,
        }


def build_corpus(
    documents: Iterator[RawDocument],
    out_path: Path,
    *,
    source_name: str,
    min_chars: int,
    max_chars: int | None,
    validation_fraction: float,
) -> CorpusStats:
    """Clean, filter, de-duplicate and split ``documents``; stream them to ``out_path``."""
    stats = CorpusStats()
    seen_text: set[bytes] = set()
    seen_ids: set[str] = set()
    rows: list[dict] = []
    writer_options = {"schema": SCHEMA, "compression": "zstd", **PARQUET_CHECKSUMS}
    with atomic_path(out_path) as tmp, pq.ParquetWriter(tmp, **writer_options) as writer:
        for doc in tqdm(documents, desc=f"corpus {source_name}", unit="doc", mininterval=2):
            stats.documents_in += 1
            stats.chars_in += doc.n_chars_raw
            if doc.doc_id in seen_ids:
                raise CorpusError(f"duplicate doc_id {doc.doc_id!r} from {doc.origin}")
            seen_ids.add(doc.doc_id)
            if doc.drop:
                stats.drop(doc.drop, doc.n_chars_raw)
                continue
            text = clean_text(doc.text or "")
            reason = None
            if not text:
                reason = "empty"
            elif len(text) < min_chars:
                reason = "too_short"
            elif max_chars is not None and len(text) > max_chars:
                reason = "too_long"
            else:
                digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
                if digest in seen_text:
                    reason = "duplicate"
                seen_text.add(digest)
            if reason:
                stats.drop(reason, doc.n_chars_raw)
                continue
            split = split_of(doc.doc_id, validation_fraction)
            stats.documents_out += 1
            stats.chars_out += len(text)
            stats.splits[split] += 1
            rows.append(
                {
                    "doc_id": doc.doc_id,
                    "source": source_name,
                    "category": doc.category,
                    "title": doc.title,
                    "origin": doc.origin,
                    "split": split,
                    "n_chars": len(text),
                    "text": text,
                }
            )
            if len(rows) >= WRITE_BATCH:
                writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
                rows = []
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
    return stats


def run(config: dict, domain: str, raw_dir: Path, out_dir: Path) -> dict:
    """Build ``out_dir/documents.parquet`` and ``out_dir/stats.json`` for one domain; the two
    are published together (the folder is renamed into place as a unit)."""
    source = domain_source(config, domain)
    settings = config["corpus"]
    raw_dir = Path(raw_dir)
    check_output(out_dir, directory=True)
    with atomic_path(out_dir) as staged:
        staged.mkdir()
        made_with = stage_provenance("corpus", stage_settings(config, "corpus", domain=domain))
        record = _build(domain, source, settings, raw_dir, staged, made_with)
    return record


def _build(
    domain: str, source: dict, settings: dict, raw_dir: Path, out_dir: Path, made_with: dict
) -> dict:
    stats = build_corpus(
        read_source(source, raw_dir, settings["on_invalid_utf8"]),
        out_dir / "documents.parquet",
        source_name=source["type"],
        min_chars=settings["min_chars"],
        max_chars=settings["max_chars"],
        validation_fraction=settings["validation_fraction"],
    )
    if stats.documents_out == 0:
        dropped = {k: v["documents"] for k, v in stats.dropped.items() if v["documents"]}
        raise CorpusError(
            f"domain {domain!r}: no document survived cleaning ({stats.documents_in} read from "
            f"{raw_dir}; dropped: {dropped})"
        )
    record = {
        "domain": domain,
        "raw_dir": str(raw_dir),
        **stats.as_dict(),
        "provenance": made_with,
    }
    write_json(out_dir / "stats.json", record)
    log.info(
        "%s: %d documents in, %d out (%d train / %d validation)",
        domain,
        stats.documents_in,
        stats.documents_out,
        stats.splits["train"],
        stats.splits["validation"],
    )
    return record


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", required=True, help="folder with the raw source files")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    run(stage_config(args), args.domain, Path(args.raw), Path(args.out_dir))


if __name__ == "__main__":
    main()
