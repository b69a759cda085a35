"""A user's own corpus (`text_files`, `jsonl`, `datasets` sources) on folders laid out as a
user would have them: what is read, what is dropped and counted, and the errors that name the
file, the line and the config key."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cft.core.config import ConfigError, validate_config
from cft.data import CorpusError
from cft.data.corpus import download_patterns, run

BODY = "Contract law governs agreements between parties and their enforcement in court. " * 3


def write(path, data: bytes | str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def config_with(demo_config, source: dict, **corpus) -> dict:
    demo_config["domains"]["biomed"]["source"] = source
    demo_config["corpus"] = {"min_chars": 50, "validation_fraction": 0.3, **corpus}
    return validate_config(demo_config)


def built(config, root, tmp_path) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "corpus"
    record = run(config, "biomed", root, out)
    return pd.read_parquet(out / "documents.parquet"), record


@pytest.fixture
def text_folder(tmp_path):
    """A user's folder: text files in sub-folders, a notes file of another kind, a draft to
    exclude, an empty file, a file of several documents between separators."""
    root = tmp_path / "law"
    write(root / "contracts" / "offer.txt", "Offer\n\n" + BODY)
    write(root / "contracts" / "acceptance.TXT", BODY + " Acceptance must mirror the offer.")
    write(root / "torts" / "negligence.txt", BODY + " Negligence needs a duty of care.")
    write(root / "torts" / "empty.txt", "")
    write(root / "drafts" / "wip.txt", BODY + " unfinished")
    write(root / "notes.md", "# notes\n")
    write(root / "cases.txt", "\n===\n".join(f"Case {i}. {BODY}" for i in range(3)) + "\n===\n")
    return root


def test_text_files_one_document_per_file_with_excludes_counted(demo_config, text_folder, tmp_path):
    config = config_with(
        demo_config,
        {"type": "text_files", "local_path": str(text_folder), "include": ["*.txt", "*.TXT"],
         "exclude": ["drafts/*"]},
    )  # fmt: skip
    table, record = built(config, text_folder, tmp_path)
    assert sorted(table.doc_id) == [
        "cases.txt", "contracts/acceptance.TXT", "contracts/offer.txt", "torts/negligence.txt",
    ]  # fmt: skip
    assert set(table.category.dropna()) == {"contracts", "torts"}
    assert record["documents_in"] == 6  # notes.md is not a text file of the source
    assert record["dropped"]["excluded"]["documents"] == 1
    assert record["dropped"]["empty"]["documents"] == 1
    assert record["documents_out"] == 4 == sum(record["splits"].values())


def test_text_files_split_on_a_separator(demo_config, text_folder, tmp_path):
    config = config_with(
        demo_config,
        {"type": "text_files", "local_path": str(text_folder), "include": ["cases.txt"],
         "separator": "\n===\n"},
    )  # fmt: skip
    table, record = built(config, text_folder, tmp_path)
    assert sorted(table.doc_id) == ["cases.txt#0", "cases.txt#1", "cases.txt#2"]
    assert table.set_index("doc_id").text["cases.txt#1"].startswith("Case 1. Contract law")
    assert record["dropped"]["empty"]["documents"] == 1  # after the last separator


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_text_files_invalid_utf8_under_each_policy(demo_config, text_folder, tmp_path, policy):
    write(text_folder / "torts" / "latin1.txt", ("Caf\xe9 " + BODY).encode("latin-1"))
    source = {"type": "text_files", "local_path": str(text_folder)}
    config = config_with(demo_config, source, on_invalid_utf8=policy)
    if policy == "error":
        with pytest.raises(CorpusError, match=r"latin1\.txt: not valid UTF-8.*on_invalid_utf8"):
            built(config, text_folder, tmp_path)
        assert not (tmp_path / "corpus").exists()
    else:
        table, record = built(config, text_folder, tmp_path)
        assert record["dropped"]["invalid_utf8"]["documents"] == 1
        assert "torts/latin1.txt" not in set(table.doc_id)


def test_text_files_that_match_nothing_are_refused(demo_config, text_folder, tmp_path):
    source = {"type": "text_files", "local_path": str(text_folder), "include": ["*.pdf"]}
    with pytest.raises(CorpusError, match=r"no file matches source.include \['\*\.pdf'\]"):
        built(config_with(demo_config, source), text_folder, tmp_path)


@pytest.fixture
def jsonl_folder(tmp_path):
    root = tmp_path / "export"
    rows = [{"id": f"doc-{i}", "body": f"Ruling {i}. {BODY}", "court": "high"} for i in range(4)]
    lines = [json.dumps(r) for r in rows]
    write(root / "part-0.jsonl", "\n".join(lines[:2]) + "\n\n")  # a blank line
    write(root / "part-1.jsonl", "\n".join(lines[2:]) + "\n")
    write(root / "empty.jsonl", "")
    return root


def jsonl_source(root, **fields) -> dict:
    return {"type": "jsonl", "local_path": str(root), "text_field": "body", **fields}


def test_jsonl_one_document_per_line_by_its_own_id(demo_config, jsonl_folder, tmp_path):
    config = config_with(demo_config, jsonl_source(jsonl_folder, id_field="id"))
    table, record = built(config, jsonl_folder, tmp_path)
    assert sorted(table.doc_id) == ["doc-0", "doc-1", "doc-2", "doc-3"]
    assert record["documents_in"] == 4  # blank lines and the empty file hold none
    assert set(table.origin) == {"part-0.jsonl:1", "part-0.jsonl:2", "part-1.jsonl:1",
                                 "part-1.jsonl:2"}  # fmt: skip


def test_jsonl_without_an_id_field_is_identified_by_file_and_line(
    demo_config, jsonl_folder, tmp_path
):
    table, _ = built(config_with(demo_config, jsonl_source(jsonl_folder)), jsonl_folder, tmp_path)
    assert sorted(table.doc_id) == sorted(table.origin)


def test_jsonl_missing_field_names_file_line_and_key(demo_config, jsonl_folder, tmp_path):
    write(jsonl_folder / "part-2.jsonl", json.dumps({"id": "x", "text": BODY}) + "\n")
    config = config_with(demo_config, jsonl_source(jsonl_folder, id_field="id"))
    with pytest.raises(
        CorpusError, match=r"part-2\.jsonl:1: no field 'body' \(source\.text_field\)"
    ):
        built(config, jsonl_folder, tmp_path)


def test_jsonl_bad_lines_are_refused_by_line(demo_config, jsonl_folder, tmp_path):
    config = config_with(demo_config, jsonl_source(jsonl_folder))
    write(jsonl_folder / "part-2.jsonl", '{"body": "fine ' + BODY + '"}\n{"body": \n')
    with pytest.raises(CorpusError, match=r"part-2\.jsonl:2: not JSON"):
        built(config, jsonl_folder, tmp_path)
    write(jsonl_folder / "part-2.jsonl", '["a list"]\n')
    with pytest.raises(CorpusError, match=r"part-2\.jsonl:1: a JSON list, expected an object"):
        built(config, jsonl_folder, tmp_path)
    write(jsonl_folder / "part-2.jsonl", '{"body": 12}\n')
    with pytest.raises(CorpusError, match=r"'body' \(source\.text_field\) holds int"):
        built(config, jsonl_folder, tmp_path)


def test_jsonl_duplicate_ids_are_refused(demo_config, jsonl_folder, tmp_path):
    write(jsonl_folder / "part-2.jsonl", json.dumps({"id": "doc-1", "body": "Other. " + BODY}))
    config = config_with(demo_config, jsonl_source(jsonl_folder, id_field="id"))
    with pytest.raises(CorpusError, match=r"duplicate doc_id 'doc-1' from part-2\.jsonl:1"):
        built(config, jsonl_folder, tmp_path)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_jsonl_invalid_utf8_line_under_each_policy(demo_config, jsonl_folder, tmp_path, policy):
    write(jsonl_folder / "part-2.jsonl", b'{"body": "Caf\xe9 ' + BODY.encode() + b'"}\n')
    config = config_with(demo_config, jsonl_source(jsonl_folder), on_invalid_utf8=policy)
    if policy == "error":
        with pytest.raises(CorpusError, match=r"part-2\.jsonl:1: not valid UTF-8"):
            built(config, jsonl_folder, tmp_path)
    else:
        _, record = built(config, jsonl_folder, tmp_path)
        assert record["dropped"]["invalid_utf8"]["documents"] == 1
        assert record["documents_out"] == 4


def test_datasets_folder_of_parquet_files_streamed(demo_config, tmp_path):
    """A parquet dump as `datasets` reads it (a data/ folder of shards named by split)."""
    root = tmp_path / "dump"
    (root / "data").mkdir(parents=True)
    for shard in range(2):
        pd.DataFrame(
            {"uid": [f"u{shard}{i}" for i in range(3)],
             "content": [f"Opinion {shard}-{i}. {BODY}" for i in range(3)]}
        ).to_parquet(root / "data" / f"train-0000{shard}-of-00002.parquet")  # fmt: skip
    source = {"type": "datasets", "local_path": str(root), "text_column": "content",
              "id_column": "uid"}  # fmt: skip
    table, record = built(config_with(demo_config, source), root, tmp_path)
    assert sorted(table.doc_id) == ["u00", "u01", "u02", "u10", "u11", "u12"]
    assert record["documents_in"] == 6

    missing = {**source, "text_column": "body"}
    with pytest.raises(CorpusError, match=r"no column 'body' \(source\.text_column\)"):
        built(config_with(demo_config, missing), root, tmp_path / "again")
    other_split = {**source, "split": "test"}
    with pytest.raises(CorpusError, match=r"split 'test'"):
        built(config_with(demo_config, other_split), root, tmp_path / "third")


def test_a_user_source_needs_a_folder_or_a_repo(demo_config):
    demo_config["domains"]["biomed"]["source"] = {"type": "jsonl"}
    with pytest.raises(ConfigError, match=r"domains\.biomed\.source"):
        validate_config(demo_config)
    demo_config["domains"]["biomed"]["source"] = {"type": "jsonl", "local_path": "/no/such"}
    with pytest.raises(ConfigError, match=r"domains\.biomed\.source\.local_path"):
        validate_config(demo_config)


def test_hub_user_sources_download_what_they_read():
    assert download_patterns({"type": "jsonl", "include": ["data/*.jsonl"]}) == ["data/*.jsonl"]
    assert "*.parquet" in download_patterns({"type": "datasets"})
    assert download_patterns({"type": "demo"}) is None
