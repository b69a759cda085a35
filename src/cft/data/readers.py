"""The corpus sources' readers (the paper's two hub corpora, the demo's, and a user's own: text
files, JSONL, anything `datasets` loads): each yields a source's documents as
:class:`RawDocument` rows (text, origin, category, title), with the drops it decides itself
(excluded files, invalid UTF-8), for the corpus stage to clean, dedupe and split. A user's
folder is walked under one policy: links followed once, hidden folders skipped, a dangling
link or a data file that is not a regular file refused by name, other files counted."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cft.core.io import non_regular_kind
from cft.core.parquet_files import parquet_error
from cft.data import CorpusError

log = logging.getLogger(__name__)

READ_BATCH = 2048  # rows per record batch read from a parquet shard


@dataclass
class RawDocument:
    doc_id: str
    text: str | None  # None: the file could not be decoded
    origin: str
    category: str | None = None
    title: str | None = None
    n_chars_raw: int = 0
    drop: str | None = None  # set by the reader for drops it decides (excluded, invalid_utf8)


def _data_files(root: Path, suffix: str) -> list[Path]:
    """Files under root whose suffix is ``suffix`` in any case (.txt, .TXT), in a stable order
    (:func:`_walk_data_files`)."""
    return _walk_data_files(root, lambda rel: Path(rel).suffix.lower() == suffix, suffix)


def _matching_files(root: Path, include: list[str]) -> list[Path]:
    """Files under root whose path relative to it matches one of the ``include`` globs
    (fnmatch: ``*`` also crosses folders), in a stable order (:func:`_walk_data_files`)."""
    return _walk_data_files(
        root, lambda rel: any(fnmatch.fnmatch(rel, p) for p in include), " or ".join(include)
    )


def _walk_data_files(root: Path, is_data, what: str) -> list[Path]:
    """The data files under root (``is_data`` of the path relative to root), in a stable order.

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
            if not is_data(path.relative_to(root).as_posix()):
                others.append(path)  # never opened
                continue
            kind = non_regular_kind(path)
            if kind is not None:  # opening a FIFO would block the stage for ever
                raise CorpusError(
                    f"{path}: {kind}, not a regular {what} file; remove it from {root} or "
                    "replace it with the file itself"
                )
            files.append(path)
    if others:
        shown = ", ".join(sorted(p.relative_to(root).as_posix() for p in others)[:5])
        log.info("%s: %d file(s) that are not %s left out: %s", root, len(others), what, shown)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _decoded(path: Path, data: bytes, on_invalid_utf8: str, where: str | None = None) -> str | None:
    """``data`` as UTF-8; None (to be counted as dropped, with a warning) under
    ``corpus.on_invalid_utf8: skip``, an error naming the file (and ``where`` in it) otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        place = f"{path}:{where}" if where else str(path)
        if on_invalid_utf8 == "error":
            raise CorpusError(
                f"{place}: not valid UTF-8 ({err.reason} at byte {err.start}); fix or remove "
                f"it, or set corpus.on_invalid_utf8: skip to count and skip it"
            ) from None
        log.warning("skipping %s: not valid UTF-8 (byte %d)", place, err.start)
        return None


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
        doc.text = _decoded(path, data, on_invalid_utf8)
        if doc.text is None:
            doc.drop = "invalid_utf8"
            doc.n_chars_raw = len(data)
            yield doc
            continue
        doc.n_chars_raw = len(doc.text)
        yield doc


def _checked_batches(parquet, shard: Path, columns: list[str]) -> Iterator:
    """The shard's record batches; a damaged page stops the stage naming the shard."""
    try:
        yield from parquet.iter_batches(columns=columns, batch_size=READ_BATCH)
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
        raise CorpusError(f"{path}: demo documents not found (run the demo_data rule)")
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


def read_text_files(
    root: Path, include: list[str], exclude: list[str], separator: str | None, on_invalid_utf8: str
) -> Iterator[RawDocument]:
    """``text_files``: every file under root matching ``include`` is one document (``doc_id``
    its relative path), or, with a ``separator``, one per piece between separators
    (``path#n``; empty pieces are counted as empty); ``exclude`` globs are dropped and
    counted."""
    files = _matching_files(root, include)
    if not files:
        raise CorpusError(f"{root}: no file matches source.include {include}")
    for path in files:
        rel = path.relative_to(root).as_posix()
        category = rel.split("/")[0] if "/" in rel else None
        if any(fnmatch.fnmatch(rel, pattern) for pattern in exclude):
            yield RawDocument(doc_id=rel, text=None, origin=rel, category=category, drop="excluded")
            continue
        data = path.read_bytes()
        text = _decoded(path, data, on_invalid_utf8)
        if text is None:
            yield RawDocument(
                doc_id=rel, text=None, origin=rel, category=category, n_chars_raw=len(data),
                drop="invalid_utf8",
            )  # fmt: skip
            continue
        pieces = [text] if separator is None else text.split(separator)
        for number, piece in enumerate(pieces):
            doc_id = rel if separator is None else f"{rel}#{number}"
            yield RawDocument(
                doc_id=doc_id, text=piece, origin=doc_id, category=category, n_chars_raw=len(piece)
            )


def read_jsonl(
    root: Path, include: list[str], text_field: str, id_field: str | None, on_invalid_utf8: str
) -> Iterator[RawDocument]:
    """``jsonl``: one document per line of every file under root matching ``include``: its
    ``text_field``, identified by its ``id_field`` (or ``path:line``). Blank lines are
    skipped; a line that is not a JSON object, or lacks a field, stops the stage naming the
    file, the line and the config key."""
    files = _matching_files(root, include)
    if not files:
        raise CorpusError(f"{root}: no file matches source.include {include}")
    for path in files:
        rel = path.relative_to(root).as_posix()
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, 1):
                where = f"{rel}:{line_no}"
                line = _decoded(path, raw, on_invalid_utf8, where=str(line_no))
                if line is None:
                    yield RawDocument(
                        doc_id=where, text=None, origin=where, n_chars_raw=len(raw),
                        drop="invalid_utf8",
                    )  # fmt: skip
                    continue
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise CorpusError(f"{path}:{line_no}: not JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise CorpusError(
                        f"{path}:{line_no}: a JSON {type(row).__name__}, expected an object"
                    )
                for key, name in (("text_field", text_field), ("id_field", id_field)):
                    if name is None:
                        continue
                    if name not in row:
                        raise CorpusError(
                            f"{path}:{line_no}: no field {name!r} (source.{key}); the line has "
                            f"{sorted(row)[:10]}"
                        )
                    if not isinstance(row[name], str) and not (
                        key == "id_field" and isinstance(row[name], int)
                    ):
                        raise CorpusError(
                            f"{path}:{line_no}: field {name!r} (source.{key}) holds "
                            f"{type(row[name]).__name__}, expected a string"
                        )
                text = row[text_field]
                doc_id = str(row[id_field]) if id_field else where
                yield RawDocument(doc_id=doc_id, text=text, origin=where, n_chars_raw=len(text))


def read_datasets(
    root: Path, split: str, text_column: str, id_column: str | None
) -> Iterator[RawDocument]:
    """``datasets``: the rows of a ``datasets``-loadable folder (parquet, arrow, csv or json
    files, or a hub dataset repo fetched by the download rule), streamed: a corpus larger than
    memory never is in memory. Each row's ``text_column`` is a document, identified by its
    ``id_column`` (or ``split#row``)."""
    from datasets import load_dataset

    try:
        rows = load_dataset(str(root.resolve()), split=split, streaming=True)
        columns = rows.column_names or list(rows.features or {})
    except (FileNotFoundError, ValueError) as err:
        raise CorpusError(
            f"{root}: not a dataset `datasets` can load with split {split!r} ({err})"
        ) from None
    for key, name in (("text_column", text_column), ("id_column", id_column)):
        if name is not None and columns and name not in columns:
            raise CorpusError(
                f"{root}: split {split!r} has no column {name!r} (source.{key}); it has {columns}"
            )
    for number, row in enumerate(rows):
        text = row[text_column]
        doc_id = str(row[id_column]) if id_column else f"{split}#{number}"
        if text is not None and not isinstance(text, str):
            raise CorpusError(
                f"{root}: row {number} of split {split!r}: column {text_column!r} holds "
                f"{type(text).__name__}, expected text (source.text_column)"
            )
        yield RawDocument(
            doc_id=doc_id, text=text or "", origin=f"{split}#{number}", n_chars_raw=len(text or "")
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
    if kind == "text_files":
        return read_text_files(
            raw_dir, source["include"], source["exclude"], source["separator"], on_invalid_utf8
        )
    if kind == "jsonl":
        return read_jsonl(
            raw_dir, source["include"], source["text_field"], source["id_field"], on_invalid_utf8
        )
    if kind == "datasets":
        return read_datasets(raw_dir, source["split"], source["text_column"], source["id_column"])
    raise CorpusError(f"unknown corpus source type {kind!r}")
