"""Outputs: nothing is deleted that the pipeline did not write, a stage's files are published as
one set, and scratch folders of killed runs are cleaned by the next run."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO, snakemake
from unit.test_io import other_data

from cft.core.io import OUTPUT_MARKER


def test_packing_cli_refuses_a_folder_it_did_not_write(tmp_path, packaged_tokenizer):
    target = tmp_path / "datasets"
    before = other_data(target)
    result = subprocess.run(
        [sys.executable, "-m", "cft.packing.tokenize", "--domain", "biomed", "--model",
         "smollm2-135m-instruct", "--method", "cpt", "--out-dir", str(target),
         "--tokenizer", str(packaged_tokenizer),
         "--corpus", str(tmp_path / "missing.parquet")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"{target}: refusing to replace a folder" in result.stderr
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


def test_snakemake_keeps_a_foreign_folder_at_a_directory_output(tmp_path):
    """Snakemake deletes a directory() output before it reruns the job (--forcerun), before the
    stage could refuse it: the workflow stops at the DAG instead, naming the folder. The
    pipeline's own folder is still replaced."""
    from cft.core import paths
    from cft.data import finben_demo

    config = ["--configfile", str(REPO / "config" / "config.yaml")]
    args = ["finben_demo", "--cores", "1", "--directory", str(tmp_path), *config]
    foreign = tmp_path / paths.finben_demo_set(sorted(finben_demo.SETS)[0])
    before = other_data(foreign)
    result = snakemake(*args, "--forcerun", "finben_demo")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{paths.finben_demo_set(sorted(finben_demo.SETS)[0])}: refusing to replace" in output
    assert "Snakemake deletes a rule's output folder" in output
    assert sorted(p.relative_to(foreign) for p in foreign.rglob("*")) == before

    shutil.rmtree(foreign)
    assert snakemake(*args).returncode == 0
    published = tmp_path / paths.finben_demo_set(sorted(finben_demo.SETS)[1])
    first = (published / OUTPUT_MARKER).stat().st_mtime_ns
    again = snakemake(*args, "--forcerun", "finben_demo")
    assert again.returncode == 0, again.stderr
    assert (published / OUTPUT_MARKER).stat().st_mtime_ns != first


@pytest.fixture
def small_filesystem(tmp_path):
    """A 256 KiB tmpfs (mounting needs root: CI runs as root and sets CFT_REQUIRE_MOUNT)."""
    import os

    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode != 0:
        if os.environ.get("CFT_REQUIRE_MOUNT"):
            pytest.fail(f"cannot mount a tmpfs: {made.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_during_packing_names_the_stage_and_its_output(
    tmp_path, packaged_tokenizer, small_filesystem
):
    """datasets writes the tokenized cache and fails with its own "An error occurred while
    generating the dataset" over the ENOSPC: the stage still says which output could not be
    written and why, as a message, and leaves nothing on the full file system."""
    import pandas as pd

    words = ["enzyme", "clearance", "hepatic", "dose", "plasma", "receptor", "binding", "kinetics"]
    texts = [" ".join(words[(i + j) % len(words)] for j in range(400)) for i in range(300)]
    corpus = tmp_path / "documents.parquet"
    pd.DataFrame({"doc_id": [f"d{i}" for i in range(300)], "split": "train", "text": texts}
                 ).to_parquet(corpus)  # fmt: skip
    out = small_filesystem / "tokenized"
    result = subprocess.run(
        [sys.executable, "-m", "cft.packing.tokenize", "--domain", "biomed", "--model",
         "smollm2-135m-instruct", "--method", "cpt", "--out-dir", str(out),
         "--tokenizer", str(packaged_tokenizer), "--corpus", str(corpus), "--threads", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"cft.packing.tokenize failed: {out}: cannot be written (No space left on device" in (
        result.stderr
    ), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert list(small_filesystem.iterdir()) == []
