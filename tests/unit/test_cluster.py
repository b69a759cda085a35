"""cft.cluster.recover's reading of what SLURM and the command line give it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cft.cluster.recover import batch_targets, parse_args, without_targets

# The batch script the slurm executor plugin submits (`sbatch --wrap`), as
# `scontrol write batch_script <id> -` prints it; options past --target-jobs shortened.
PLUGIN_SCRIPT = """#!/bin/sh
# This script was created by sbatch --wrap.

/venv/bin/python -m snakemake --snakefile '/w/workflow/Snakefile' --target-jobs {targets} \
--allowed-rules train --cores 'all' --attempt 1 --force-use-threads --wait-for-files \
'/w/.snakemake/tmp.x' --force --mode 'remote'
"""


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ("'slow:'", ("slow:",)),
        (
            "train:domain=biomed,model=tiny,method=cpt,seed=1234",
            ("train:domain=biomed,model=tiny,method=cpt,seed=1234",),
        ),
        # a group job runs several; a value with a space is quoted by the plugin
        (
            "'corpus:domain=my domain' demo_data:domain=b",
            ("corpus:domain=my domain", "demo_data:domain=b"),
        ),
    ],
)
def test_the_snakemake_jobs_of_a_batch_script(targets, expected):
    assert batch_targets(PLUGIN_SCRIPT.format(targets=targets)) == expected


def test_a_script_of_another_tool_names_no_job():
    assert batch_targets("#!/bin/sh\nsrun python train.py --epochs 3\n") == ()


def test_acting_needs_the_crashed_runs_options(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--cancel"])
    assert "snakemake options after `--`" in capsys.readouterr().err


def test_the_workflow_directory_comes_from_the_snakemake_options():
    args, options = parse_args(["--wait", "--", "--profile", "p", "-d", "/x/run", "-n"])
    assert (args.wait, args.cancel, args.directory) == (True, False, Path("/x/run"))
    assert options == ["--profile", "p", "-d", "/x/run", "-n"]
    listed, none = parse_args([])
    assert (listed.cancel, listed.wait, listed.directory, none) == (False, False, Path("."), [])


def test_only_the_completed_jobs_are_touched_not_the_runs_own_targets():
    """Snakemake's own parser decides what is a target: two here, and the word after
    --configfile's first file is one more config file, as snakemake itself reads it."""
    options = ["--profile", "profiles/slurm", "results/x.json", "tables", "--configfile",
               "a.yaml", "b.yaml", "-d", "/w", "--cores", "2"]  # fmt: skip
    assert without_targets(options) == [
        "--profile", "profiles/slurm", "--configfile", "a.yaml", "b.yaml", "-d", "/w",
        "--cores", "2",
    ]  # fmt: skip
