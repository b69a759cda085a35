"""The corpus stage: raw source -> one canonical, cleaned, de-duplicated, split document table.

Sources (``domains.<name>.source.type`` in config):

- ``openmedtext``: a folder laid out like the hub repo ywchoi/OpenMedText, one document per
  ``.txt`` file in category folders; files matching ``exclude`` globs are dropped (licences).
- ``financial_news``: a folder laid out like ashraq/financial-news-articles, parquet shards with
  title, text and url; a document is the title and the text.
- ``demo``: the project's fictional-knowledge ``documents.jsonl`` (see cft.data.demo_data).
- a user's own (``local_path``, or a hub dataset repo the download rule fetches):
  ``text_files`` (one document per file, or per piece between separators), ``jsonl`` (one per
  line, text and id fields named in the config), ``datasets`` (anything
  ``datasets.load_dataset`` reads from a folder, streamed).

Output: ``documents.parquet`` (doc_id, source, category, title, origin, split, n_chars, text) and
``stats.json`` (documents and characters in, dropped by reason, out). The table is streamed to
disk in batches, so memory does not grow with the corpus; every dropped document is counted.

    python -m cft.data.corpus --config config/config.yaml --domain biomed \\
        --raw results/demo_data/biomed --out-dir results/corpus/biomed
"""

from __future__ import annotations

import hashlib
import logging
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
from cft.core.io import atomic_path, check_output, write_json
from cft.core.logging_utils import setup_logging
from cft.core.parquet_files import PARQUET_CHECKSUMS
from cft.core.settings import stage_provenance, stage_settings
from cft.data import CorpusError
from cft.data.readers import RawDocument, read_source

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

# Hub files each source needs (used by the download rule); text_files and jsonl take their own
# include globs.
DOWNLOAD_PATTERNS = {
    "openmedtext": ["*.[tT][xX][tT]", "*.md"],
    "financial_news": ["*.parquet", "*.md"],
    # what datasets.load_dataset reads from a repo folder; README.md may name its splits
    "datasets": ["*.parquet", "*.arrow", "*.csv", "*.tsv", "*.json", "*.jsonl", "*.txt", "*.md"],
}


def download_patterns(source: dict) -> list[str] | None:
    """The hub files a source needs, or None for a source that is not downloaded (demo)."""
    if source["type"] in ("text_files", "jsonl"):
        return list(source["include"])
    return DOWNLOAD_PATTERNS.get(source["type"])


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
