"""Outputs: nothing is deleted that the pipeline did not write, a stage's files are published as
one set, and scratch folders of killed runs are cleaned by the next run."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO
from unit.test_io import other_data


def test_packing_cli_refuses_a_folder_it_did_not_write(tmp_path, packaged_tokenizer):
    target = tmp_path / "datasets"
    before = other_data(target)
    result = subprocess.run(
        [sys.executable, "-m", "cft.packing", "--domain", "biomed", "--model",
         "smollm2-135m-instruct", "--method", "cpt", "--out-dir", str(target),
         "--tokenizer", str(packaged_tokenizer),
         "--corpus", str(tmp_path / "missing.parquet")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"{target}: refusing to replace a folder" in result.stderr
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before
