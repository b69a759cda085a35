"""Config validation: the shipped configs pass, bad ones stop with a message that names the key,
the bad value and what is allowed."""

from __future__ import annotations

import yaml
from conftest import REPO, snakemake


def test_workflow_stops_before_any_job_on_a_bad_config(tmp_path, demo_config):
    demo_config["grid"]["methods"] = ["cpt", "sft"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(demo_config))
    result = snakemake("-n", "--configfile", str(bad), cwd=REPO)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "grid.methods.1" in output and "'sft'" in output
    assert "Job stats" not in output


def test_workflow_refuses_a_key_written_twice_and_a_float_integer(tmp_path, demo_config):
    twice = tmp_path / "twice.yaml"
    twice.write_text(yaml.safe_dump(demo_config) + "seed: 7\n")  # `seed` is already there
    result = snakemake("-n", "--configfile", str(twice), cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "key 'seed' is written twice" in output
    demo_config["seed"] = 1234.0
    fractional = tmp_path / "float.yaml"
    fractional.write_text(yaml.safe_dump(demo_config))
    result = snakemake("-n", "--configfile", str(fractional), cwd=REPO)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "'seed' = 1234.0: expected an integer" in output
    assert "Job stats" not in output


def test_a_nested_number_can_be_overridden_from_the_command_line(demo_config):
    """`--config` reads nested values as strings (YAML BaseLoader); they are typed again, and a
    bad one is blamed on --config."""
    config = ["--configfile", str(REPO / "config" / "config.yaml")]
    ok = snakemake("-n", *config, "--config", "training={learning_rate: 2.0e-4, epochs: 2}")
    assert ok.returncode == 0, ok.stderr
    bad = snakemake("-n", *config, "--config", "training={learning_rate: fast}")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "--config: 'training.learning_rate' = 'fast'" in output and "number" in output
