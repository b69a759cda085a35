"""Outputs: nothing is deleted that the pipeline did not write, a stage's files are published as
one set, and scratch folders of killed runs are cleaned by the next run."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from cft.core.io import OUTPUT_MARKER, OutputError, atomic_path, check_output, scratch_dir
from cft.data import corpus
from cft.evaluation import evaluate as evaluation


def other_data(folder):
    """A folder of someone else's files."""
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "data").mkdir()
    (folder / "data" / "x.bin").write_bytes(b"\x00" * 1000)
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def demo_raw(config, tmp_path):
    from cft.data.demo_data import run as generate

    source = config["domains"]["biomed"]["source"]
    generate(source["generator"], 4, 2, source["seed"], tmp_path / "raw")
    return tmp_path / "raw"


def test_evaluation_refuses_a_folder_as_its_output_file_before_any_work(demo_config, tmp_path):
    target = tmp_path / "evals"
    before = other_data(target)
    with pytest.raises(OutputError, match="expected an output file path, but it is a folder"):
        evaluation.run(
            demo_config, "biomed", "m", "chat", "demo_knowledge_biomed_cloze",
            model_dir=tmp_path / "no-model", out_json=target,
        )  # fmt: skip
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


def test_a_published_folder_is_replaced_on_rerun_but_a_foreign_one_never(tmp_path):
    target = tmp_path / "out"
    with atomic_path(target) as staged:
        staged.mkdir()
        (staged / "a.txt").write_text("1")
    assert (target / OUTPUT_MARKER).is_file()
    with atomic_path(target) as staged:  # our own: replaced as a whole
        staged.mkdir()
        (staged / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "b.txt"]
    (target / OUTPUT_MARKER).unlink()
    with pytest.raises(OutputError, match=r"no \.cft-output marker"):
        check_output(target, directory=True)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output(target / "b.txt" / "x.json")


def test_corpus_files_are_published_together(demo_config, tmp_path, monkeypatch):
    """A failure after documents.parquet is written leaves the previous pair untouched."""
    out = tmp_path / "corpus"
    corpus.run(demo_config, "biomed", raw_dir=demo_raw(demo_config, tmp_path), out_dir=out)
    old = {name: (out / name).read_bytes() for name in ("documents.parquet", "stats.json")}
    demo_config["corpus"]["min_chars"] = 150  # a different table this time

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed between the two files")

    monkeypatch.setattr(corpus, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        corpus.run(demo_config, "biomed", raw_dir=tmp_path / "raw", out_dir=out)
    assert {name: (out / name).read_bytes() for name in old} == old
    assert not [p for p in tmp_path.glob(".corpus.*")]  # the scratch went with the failure


def test_scratch_of_a_killed_run_is_removed_by_the_next_one(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".out.json.{host}-{dead.pid}.abc123.tmp"
    live = tmp_path / f".out.json.{host}-{os.getpid()}.def456.tmp"  # a running writer's
    foreign = tmp_path / ".unrelated.tmp"
    for folder in (stale, live, foreign):
        folder.mkdir()
    with atomic_path(tmp_path / "out.json") as staged:
        staged.write_text(json.dumps({"ok": True}))
    assert not stale.exists() and live.exists() and foreign.exists()
    assert json.loads((tmp_path / "out.json").read_text()) == {"ok": True}
    # the packer's scratch (tokenized shards) works the same way
    stale = tmp_path / f".cpt.pack.{host}-{dead.pid}.x.tmp"
    stale.mkdir()
    with scratch_dir(tmp_path, "cpt.pack") as scratch:
        assert scratch.name.startswith(f".cpt.pack.{host}-{os.getpid()}.")
        assert not stale.exists()
    assert not scratch.exists()


def damaged_parquet(path, compression: str) -> list[str]:
    """A parquet file as the stages write it (page checksums), one byte of a data page
    flipped; returns the rows it held."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cft.core.parquet_files import PARQUET_CHECKSUMS

    rows = [f"document {i} about the liver " * 8 for i in range(3000)]
    table = pa.table({"doc_id": [str(i) for i in range(3000)], "text": rows})
    pq.write_table(table, path, compression=compression, use_dictionary=False,
                   **PARQUET_CHECKSUMS)  # fmt: skip
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    return rows


@pytest.mark.parametrize("compression", ["snappy", "none"])
def test_a_damaged_parquet_page_is_named_not_read_as_other_text(tmp_path, compression):
    """Uncompressed, a flipped byte reads back as other text without an error unless the page
    checksums are verified; compressed, it breaks decompression. Either way: the file named."""
    import pyarrow.parquet as pq

    from cft.core.parquet_files import DataFileError, read_parquet, verify_parquet

    path = tmp_path / "documents.parquet"
    rows = damaged_parquet(path, compression)
    if compression == "none":
        unchecked = pq.read_table(path).column("text").to_pylist()
        assert unchecked != rows  # what a reader without the checksums gets
    for read in (read_parquet, verify_parquet):
        with pytest.raises(DataFileError, match=rf"{path}: not a readable parquet file"):
            read(path)


@pytest.mark.parametrize(
    ("code", "filename"),
    [(errno.ENOSPC, None), (errno.EROFS, None), (errno.EACCES, "beside")],
)
def test_a_full_or_read_only_file_system_is_named_and_nothing_is_published(
    tmp_path, code, filename
):
    target = tmp_path / "out" / "stats.json"
    name = str(target.parent / ".scratch") if filename else None
    message = rf"{target}: cannot be written \({os.strerror(code)}"
    with pytest.raises(OutputError, match=message), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise OSError(code, os.strerror(code), name)
    assert not target.exists() and list(target.parent.iterdir()) == []
    # permission denied on an input the block reads is not blamed on the output
    with pytest.raises(PermissionError), atomic_path(target):
        raise PermissionError(errno.EACCES, "Permission denied", "/etc/shadow-input")


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_an_output_path_that_is_a_symlink_is_refused_before_any_work(demo_config, tmp_path, kind):
    """Publishing renames onto the path: a link there would be replaced (a file) or fail the
    rename after all the work (a folder). It is refused first, naming where the link points."""
    real = tmp_path / "real"
    if kind == "folder":
        real.mkdir()
        link = tmp_path / "corpus"
        link.symlink_to(real)
        with pytest.raises(OutputError, match=rf"{link}: is a symbolic link \(to {real}\)"):
            corpus.run(demo_config, "biomed", raw_dir=tmp_path / "no-raw", out_dir=link)
        assert list(real.iterdir()) == []
    else:
        real.write_text("keep")
        link = tmp_path / "stats.json"
        link.symlink_to(real)
        refused = pytest.raises(OutputError, match=rf"{real}\) or remove the link")
        with refused, atomic_path(link) as tmp:
            tmp.write_text("new")
        assert real.read_text() == "keep"
    assert link.is_symlink()


def test_a_full_disk_inside_a_library_error_is_named_by_its_target(tmp_path):
    """datasets wraps a full disk in its own DatasetGenerationError; the chain is searched, and
    the result the work was for is named, not the library's message."""

    class LibraryError(Exception):
        pass

    target = tmp_path / "tokenized"
    refused = pytest.raises(OutputError, match=rf"{target}: cannot be written \(No space left")
    with refused, scratch_dir(tmp_path, "tokenized.pack", target=target) as scratch:
        (scratch / "part.arrow").write_bytes(b"x" * 10)
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(scratch / "x"))
        except OSError as err:
            raise LibraryError("An error occurred while generating the dataset") from err
    assert list(tmp_path.iterdir()) == []  # the scratch is gone
    # an error that is not a failed write keeps its own type
    with pytest.raises(LibraryError), scratch_dir(tmp_path, "x", target=target):
        raise LibraryError("a bug")
