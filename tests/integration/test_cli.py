"""The stages' command lines: a wrong argument or a damaged input is named, with what was
expected, before any work where possible."""

from __future__ import annotations

import shutil

import pytest
from unit.test_cli import cli


@pytest.mark.parametrize(
    "args",
    [
        ("cft.data.corpus", "--domain", "law", "--raw", "x", "--out-dir", "y"),
        ("cft.packing.tokenize", "--domain", "law", "--model", "smollm2-135m-instruct",
         "--method", "cpt", "--out-dir", "y"),
        ("cft.packing.export", "--domain", "law", "--out", "y.jsonl"),
    ],
)  # fmt: skip
def test_an_unknown_domain_is_named_with_the_defined_ones(args):
    result = cli(*args)
    assert result.returncode != 0
    assert "--domain 'law' is not defined under 'domains' in config/config.yaml" in result.stderr
    assert "defined: ['biomed', 'finance']" in result.stderr


def test_a_truncated_tokenized_dataset_is_named(demo_config, tmp_path, tiny_model, tiny_data):
    from conftest import make_job

    from cft.training import TrainingError
    from cft.training.run import train

    damaged = tmp_path / "tokenized"
    shutil.copytree(tiny_data, damaged)
    arrow = next((damaged / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:100])
    job = make_job(demo_config, tmp_path, tiny_model, damaged)
    with pytest.raises(TrainingError, match=rf"{damaged}: not a readable tokenized dataset"):
        train(job)
