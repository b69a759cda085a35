"""Corpus stage on fixture folders laid out like the hub repos: cleaning, drops, split, stats."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cft.core.config import resolve_path, validate_config
from cft.core.provenance import config_hash
from cft.core.settings import stage_digest, stage_settings
from cft.data import CorpusError
from cft.data.corpus import clean_text, run, split_of

LONG_TEXT = ("A very long textbook chapter sentence about renal physiology. " * 20_000).strip()


def write(path, data: bytes | str):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


@pytest.fixture
def openmedtext_dir(tmp_path):
    """A folder laid out like ywchoi/OpenMedText: category folders of one-document .txt files."""
    root = tmp_path / "OpenMedText"
    body = "The kidney filters blood and regulates electrolytes in the human body. " * 4
    write(root / "README.md", "# OpenMedText\n")
    write(root / "mdpi" / "biology" / "a001.txt", "Title A\r\n\r\n\r\n\r\n" + body)
    write(root / "mdpi" / "biology" / "a002.txt", body)  # a001 without its title: kept
    write(root / "mdpi" / "medicine" / "b001.txt", "   \n\t \n")  # empty after cleaning
    write(root / "mdpi" / "medicine" / "b002.txt", "Too short.")
    write(root / "mdpi" / "medicine" / "b003.txt", "Title A\n\n" + body)  # duplicate of a001
    write(root / "textbooks" / "nc_book" / "ch1.txt", body + " licensed non-commercially")
    write(root / "textbooks" / "open_book" / "ch1.txt", LONG_TEXT)
    # Decomposed e + combining acute, a tab run and a NUL control character.
    write(root / "mdpi" / "medicine" / "b004.txt", "Cafe\u0301\t\t tea \x00" + body)
    # Hidden folders (the hub client's .cache) are not documents.
    write(root / ".cache" / "huggingface" / "x.txt", body)
    return root


@pytest.fixture
def omt_config(demo_config, openmedtext_dir):
    demo_config["domains"]["biomed"]["source"] = {
        "type": "openmedtext",
        "local_path": str(openmedtext_dir),
        "exclude": ["textbooks/nc_book/*"],
    }
    demo_config["corpus"] = {"min_chars": 50, "validation_fraction": 0.3}
    return validate_config(demo_config)


def build(config: dict, domain: str, out_dir: Path) -> dict:
    """The corpus stage on a source given by local_path, with the raw folder the rule hands it."""
    raw_dir = resolve_path(config["domains"][domain]["source"]["local_path"])
    return run(config, domain, raw_dir=raw_dir, out_dir=out_dir)


def test_clean_text_normalises():
    assert clean_text("  a \t b  \r\n\r\n\r\n\r\nc\u00a0d \x07 ") == "a b\n\nc d"
    decomposed = "Cafe\u0301"
    assert clean_text(decomposed) == unicodedata.normalize("NFC", decomposed) == "Café"
    assert clean_text(" \n\t\n ") == ""


def test_openmedtext_drops_are_counted(omt_config, tmp_path):
    stats = build(omt_config, "biomed", tmp_path / "out")
    table = pd.read_parquet(tmp_path / "out" / "documents.parquet")
    on_disk = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert on_disk["documents_out"] == stats["documents_out"] == len(table)

    dropped = {k: v["documents"] for k, v in stats["dropped"].items()}
    assert dropped == {
        "invalid_utf8": 0,
        "excluded": 1,
        "empty": 1,
        "too_short": 1,
        "too_long": 0,
        "duplicate": 1,
    }
    assert stats["documents_in"] == 8 == stats["documents_out"] + sum(dropped.values())
    assert set(table.doc_id) == {
        "mdpi/biology/a001.txt",
        "mdpi/biology/a002.txt",
        "mdpi/medicine/b004.txt",
        "textbooks/open_book/ch1.txt",
    }
    assert stats["chars_out"] == table.n_chars.sum() == table.text.str.len().sum()
    assert stats["splits"]["train"] + stats["splits"]["validation"] == len(table)
    # the first of two identical documents (in path order) is the one kept
    assert "mdpi/medicine/b003.txt" not in set(table.doc_id)
    row = table.set_index("doc_id").loc["mdpi/medicine/b004.txt"]
    assert row.text.startswith("Café tea The kidney") and "\x00" not in row.text
    assert row.category == "mdpi" and row.source == "openmedtext"
    # a very long document passes intact: the packer, not the cleaner, slices documents
    long_row = table.set_index("doc_id").loc["textbooks/open_book/ch1.txt"]
    assert long_row.text == LONG_TEXT
    # the record carries the digest the corpus rule reruns on, of the same settings slice
    made_with = stats["provenance"]
    corpus_settings = stage_settings(omt_config, "corpus", domain="biomed")
    assert made_with["config_hash"] == config_hash(corpus_settings)
    assert made_with["stage_digest"] == stage_digest(omt_config, "corpus", domain="biomed")


def test_every_file_of_a_snapshot_is_read_or_named(omt_config, openmedtext_dir, tmp_path, caplog):
    """A hub snapshot is made of links: a linked folder is read (a loop once), an upper-case
    .TXT is a document, other files are counted in the log, and a dangling link (a missing
    blob) stops the stage naming it."""
    body = "Hepatic enzymes clear drugs from the circulation over hours. " * 4
    write(openmedtext_dir / "mdpi" / "medicine" / "c001.TXT", body + "upper")
    outside = tmp_path / "elsewhere"
    write(outside / "d001.txt", body + "linked")
    (openmedtext_dir / "linked").symlink_to(outside, target_is_directory=True)
    (outside / "loop").symlink_to(openmedtext_dir, target_is_directory=True)
    with caplog.at_level("INFO", logger="cft.data"):
        stats = build(omt_config, "biomed", tmp_path / "out")
    table = pd.read_parquet(tmp_path / "out" / "documents.parquet")
    assert {"mdpi/medicine/c001.TXT", "linked/d001.txt"} <= set(table.doc_id)
    assert stats["documents_in"] == 10  # the 8 of the fixture, each read once
    assert "1 file(s) that are not .txt left out: README.md" in caplog.text

    (openmedtext_dir / "mdpi" / "biology" / "a003.txt").symlink_to(tmp_path / "blobs" / "gone")
    with pytest.raises(CorpusError, match=r"a003\.txt: a link to a missing file"):
        build(omt_config, "biomed", tmp_path / "again")


def test_a_data_file_that_is_not_a_regular_file_is_refused_by_name(
    omt_config, openmedtext_dir, tmp_path
):
    """Opening a FIFO blocks until something writes to it: a named pipe called ``*.txt`` is
    refused by name (with an alarm as the test's guard against the hang); one with another
    suffix is never opened, and a folder called ``x.txt`` is walked as a folder."""
    import os
    import signal

    (openmedtext_dir / "mdpi" / "notes.txt").mkdir()  # a folder: walked, not read
    os.mkfifo(openmedtext_dir / "mdpi" / "pipe.log")  # another suffix: counted, never opened
    assert build(omt_config, "biomed", tmp_path / "ok")["documents_in"] == 8
    os.mkfifo(openmedtext_dir / "mdpi" / "medicine" / "stream.txt")

    def hung(*_):
        raise TimeoutError("the corpus stage blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        with pytest.raises(CorpusError, match=r"stream\.txt: a named pipe \(FIFO\), not a regular"):
            build(omt_config, "biomed", tmp_path / "out")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not (tmp_path / "out").exists()


def test_max_chars_drops_too_long(omt_config, tmp_path):
    omt_config["corpus"]["max_chars"] = 100_000
    stats = build(omt_config, "biomed", tmp_path / "out")
    assert stats["dropped"]["too_long"] == {"documents": 1, "chars": len(LONG_TEXT)}


def test_invalid_utf8_error_names_the_file(omt_config, openmedtext_dir, tmp_path):
    bad = openmedtext_dir / "mdpi" / "medicine" / "latin1.txt"
    write(bad, "Fi\xe8vre jaune ".encode("latin-1") * 20)
    with pytest.raises(CorpusError, match=r"latin1\.txt: not valid UTF-8.*on_invalid_utf8: skip"):
        build(omt_config, "biomed", tmp_path / "out")
    assert not (tmp_path / "out" / "documents.parquet").exists()  # nothing half-written


def test_invalid_utf8_skip_is_counted(omt_config, openmedtext_dir, tmp_path):
    write(openmedtext_dir / "mdpi" / "medicine" / "latin1.txt", b"caf\xe9 " * 40)
    omt_config["corpus"]["on_invalid_utf8"] = "skip"
    stats = build(omt_config, "biomed", tmp_path / "out")
    assert stats["dropped"]["invalid_utf8"] == {"documents": 1, "chars": 200}
    assert stats["documents_in"] == 9


def test_corpus_with_no_surviving_document_fails(omt_config, tmp_path):
    omt_config["corpus"]["min_chars"] = 10_000_000
    with pytest.raises(CorpusError, match="no document survived cleaning"):
        build(omt_config, "biomed", tmp_path / "out")


def test_empty_source_folder_fails(demo_config, tmp_path):
    (tmp_path / "empty").mkdir()
    demo_config["domains"]["biomed"]["source"] = {
        "type": "openmedtext",
        "local_path": str(tmp_path / "empty"),
    }
    validate_config(demo_config)
    with pytest.raises(CorpusError, match=r"no \.txt files found"):
        build(demo_config, "biomed", tmp_path / "out")


def write_news_shards(root, rows_per_shard):
    """Parquet shards laid out like ashraq/financial-news-articles (data/train-*.parquet)."""
    for i, rows in enumerate(rows_per_shard):
        path = root / "data" / f"train-{i:05d}-of-{len(rows_per_shard):05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path)


def test_financial_news_title_and_text(demo_config, tmp_path):
    body = "Shares of the lender rose after quarterly profit beat expectations. " * 5
    write_news_shards(
        tmp_path / "news",
        [
            [
                {"title": "Bank beats", "text": body, "url": "https://x/1"},
                {"title": "Bank beats", "text": body, "url": "https://x/2"},  # duplicate
                {"title": "Empty", "text": None, "url": "https://x/3"},  # too short
            ],
            [{"title": None, "text": body + " Bonds fell.", "url": "https://x/4"}],
        ],
    )
    demo_config["domains"]["finance"]["source"] = {
        "type": "financial_news",
        "local_path": str(tmp_path / "news"),
    }
    demo_config["corpus"] = {"min_chars": 50}
    validate_config(demo_config)
    stats = build(demo_config, "finance", tmp_path / "out")
    table = pd.read_parquet(tmp_path / "out" / "documents.parquet")
    assert list(table.doc_id) == [
        "data/train-00000-of-00002.parquet#0",
        "data/train-00001-of-00002.parquet#0",
    ]
    assert table.text[0] == "Bank beats\n\n" + body.strip()
    assert table.title[0] == "Bank beats" and table.origin[0] == "https://x/1"
    assert stats["dropped"]["duplicate"]["documents"] == 1
    assert stats["dropped"]["too_short"]["documents"] == 1


def test_split_is_deterministic_and_order_free():
    ids = [f"doc-{i}" for i in range(20_000)]
    first = [split_of(d, 0.1) for d in ids]
    assert first == [split_of(d, 0.1) for d in ids]
    assert [split_of(d, 0.1) for d in reversed(ids)] == first[::-1]
    share = first.count("validation") / len(ids)
    assert 0.09 < share < 0.11
    # raising the fraction only moves documents into validation
    wider = [split_of(d, 0.2) for d in ids]
    assert all(w == "validation" for f, w in zip(first, wider, strict=True) if f == "validation")
    assert {split_of(d, 0.0) for d in ids} == {"train"}


def test_same_config_gives_identical_table(omt_config, tmp_path):
    build(omt_config, "biomed", tmp_path / "a")
    build(omt_config, "biomed", tmp_path / "b")
    a = pd.read_parquet(tmp_path / "a" / "documents.parquet")
    b = pd.read_parquet(tmp_path / "b" / "documents.parquet")
    pd.testing.assert_frame_equal(a, b)


def news_config(config, root):
    config["domains"]["finance"]["source"] = {"type": "financial_news", "local_path": str(root)}
    config["corpus"] = {"min_chars": 50}
    return validate_config(config)


@pytest.mark.parametrize(
    ("column", "value", "held"),
    [
        ("text", 12345, "int64"),
        ("text", b"Shares rose after the results. " * 3, "binary"),
        ("text", ["Shares rose after the results."], "list<element: string>"),
        ("title", 7, "int64"),
    ],
)
def test_a_news_column_that_is_not_text_is_refused_by_name(
    demo_config, tmp_path, column, value, held
):
    row = {"title": "Bank beats", "text": "Shares rose after the results. " * 3, column: value}
    write_news_shards(tmp_path / "news", [[row]])
    config = news_config(demo_config, tmp_path / "news")
    expected = f"train-00000-of-00001.parquet: column '{column}' holds {held}, expected strings"
    with pytest.raises(CorpusError, match=re.escape(expected)):
        build(config, "finance", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_shard_that_is_not_parquet_is_refused_by_name(demo_config, tmp_path):
    shard = tmp_path / "news" / "data" / "train-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"PAR1 this is not really parquet")
    config = news_config(demo_config, tmp_path / "news")
    with pytest.raises(CorpusError, match=r"train-00000-of-00001\.parquet: not a readable parquet"):
        build(config, "finance", tmp_path / "out")


def test_a_byte_order_mark_is_stripped_and_its_copy_found_a_duplicate(omt_config, tmp_path):
    root = Path(omt_config["domains"]["biomed"]["source"]["local_path"])
    original = (root / "mdpi" / "biology" / "a002.txt").read_text()
    write(root / "mdpi" / "biology" / "a003.txt", "\ufeff" + original)
    stats = build(omt_config, "biomed", tmp_path / "out")
    table = pd.read_parquet(tmp_path / "out" / "documents.parquet")
    assert not table.text.str.contains("\ufeff").any()
    assert "mdpi/biology/a003.txt" not in set(table.doc_id)
    assert stats["dropped"]["duplicate"]["documents"] == 2  # b003 (a001's copy) and a003
