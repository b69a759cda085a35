"""Rerun semantics: a config change reruns exactly the jobs whose settings it changes, and their
dependants; a change that only schedules, or a reordered config, reruns nothing.

The demo DAG is laid out in a scratch folder with every output present and snakemake's own
metadata recorded (`--touch`), as after a finished run; then each edited config is dry-run.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from conftest import BIN, REPO, job_counts, snakemake

TRAINED = 4 * 2  # cpt, cft, negcft, autocft x 2 domains
EVALS_TRAINED = 4 * 2  # one job per trained model (scoring its domain's suite)
EVALS = EVALS_TRAINED + 2  # and the untrained chat rows
CLOSING = {"loss_figure": 2, "table": 2, "all": 1}
DOWNSTREAM_OF_TRAIN = {"evaluate": EVALS_TRAINED, **CLOSING}


@pytest.fixture(scope="module")
def finished_demo(tmp_path_factory):
    """A scratch workdir where the demo DAG is complete, metadata included."""
    workdir = tmp_path_factory.mktemp("finished_demo")
    config = REPO / "config" / "config.yaml"
    summary = snakemake("--summary", "--configfile", str(config), cwd=workdir)
    assert summary.returncode == 0, summary.stderr
    for line in summary.stdout.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        if path.suffix:  # files; the suffix-less outputs are directory() outputs
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.mkdir(parents=True, exist_ok=True)
    touched = snakemake(
        "--touch", "--forceall", "--cores", "1", "--configfile", str(config), cwd=workdir
    )
    assert touched.returncode == 0, touched.stderr
    return workdir


def planned(workdir, config: dict, name: str) -> dict[str, int]:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake("-n", "--configfile", str(path), cwd=workdir)
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    counts = job_counts(text)
    del counts["total"]
    return counts


def edited(config: dict, key: str, value) -> dict:
    config = copy.deepcopy(config)
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})  # keys left to the schema defaults
    node[last] = value
    return config


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("training.learning_rate", 1.0e-4, {"train": TRAINED, **DOWNSTREAM_OF_TRAIN}),
        ("training.epochs", 2, {"train": TRAINED, **DOWNSTREAM_OF_TRAIN}),
        # the block length is both the packer's and the trainer's
        (
            "training.max_seq_len",
            128,
            {"tokenize": TRAINED, "train": TRAINED, **DOWNSTREAM_OF_TRAIN},
        ),
        ("evaluation.limit", 5, {"evaluate": EVALS, "table": 2, "all": 1}),
        ("evaluation.confidence.bootstrap_iters", 500, {"table": 2, "all": 1}),
        (
            "autogen.temperature",
            0.3,
            {
                "autogen": 2,
                "tokenize": 2,
                "train": 2,
                "evaluate": 2,
                "loss_figure": 2,
                "table": 2,
                "all": 1,
            },
        ),
        # prompt shaping: only the methods with prompts (cft, negcft, autocft; sampling: the
        # fixed prompts of cft and negcft), never the CPT chain
        ("packing.prompt_separator", "\n", {"tokenize": 6, "train": 6, "evaluate": 6, **CLOSING}),
        (
            "packing.prompt_sampling",
            "per_document",
            {"tokenize": 4, "train": 4, "evaluate": 4, **CLOSING},
        ),
        # the demo sources are generated UTF-8: the setting cannot change them
        ("corpus.on_invalid_utf8", "skip", {}),
        # scheduling only: where and how long a job runs does not change what it computes
        ("training.resources.default.runtime", 99, {}),
        ("evaluation.mem_mb", 9000, {}),
        ("training.save_steps", 7, {}),
    ],
)
def test_a_config_change_reruns_exactly_its_dependent_chain(
    finished_demo, demo_config, key, value, expected
):
    name = re.sub(r"\W", "_", key)
    assert planned(finished_demo, edited(demo_config, key, value), name) == expected


def test_a_changed_prompt_file_reruns_the_jobs_that_use_it(finished_demo, demo_config, tmp_path):
    prompts = yaml.safe_load((REPO / "config" / "prompts" / "cft.yaml").read_text())
    prompts["prompts"][0]["text"] = "Explain each statement to a colleague, step by step."
    other = tmp_path / "cft.yaml"
    other.write_text(yaml.safe_dump(prompts))
    counts = planned(finished_demo, edited(demo_config, "prompts.cft", str(other)), "prompts")
    # the CFT sets, the tuning-set export, and the autogen fallbacks (drawn from the CFT prompts)
    assert counts["tokenize"] == 2 * 2 and counts["export"] == 2
    assert counts["autogen"] == 2 and counts["train"] == 2 * 2
    assert "corpus" not in counts and "demo_data" not in counts


def test_a_comment_in_a_prompt_file_reruns_nothing(finished_demo, demo_config, tmp_path):
    text = (REPO / "config" / "prompts" / "cft.yaml").read_text()
    commented = tmp_path / "cft.yaml"
    commented.write_text("# reviewed 2026-11-30: wording kept\n" + text)
    config = edited(demo_config, "prompts.cft", str(commented))
    assert planned(finished_demo, config, "commented") == {}


def test_the_same_config_in_another_key_order_reruns_nothing(finished_demo, demo_config):
    def reordered(node):
        if isinstance(node, dict):
            return {key: reordered(node[key]) for key in reversed(list(node))}
        return node

    assert planned(finished_demo, reordered(demo_config), "reordered") == {}


def test_a_fresh_checkout_in_front_of_finished_results_reruns_nothing(finished_demo, tmp_path):
    """A clone renews every file's modification time; Snakemake's own code check compares the
    entry scripts' times, so the profiles leave it off and the rules' params carry the scripts'
    and stages' content digests instead."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    checkout = tmp_path / "checkout"
    for name in filter(None, files.stdout.decode().split("\0")):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / name, checkout / name)  # new modification times
    result = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(checkout / "workflow" / "Snakefile"), "-n",
         "--profile", str(checkout / "profiles" / "local"),
         "--configfile", str(checkout / "config" / "config.yaml")],
        cwd=finished_demo, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_results_copied_with_new_file_times_are_restored_by_their_recorded_times(
    finished_demo, demo_config, tmp_path
):
    """A copy that renews file times (cp -r, an object store) can give inputs newer times
    than their outputs: Snakemake's mtime trigger then replans the trainings and all after.
    `python -m cft.core.restore` sets each output back to the time Snakemake recorded for it."""
    copy = tmp_path / "restored"
    shutil.copytree(finished_demo, copy, copy_function=shutil.copyfile, symlinks=True)
    files = sorted((p for p in copy.rglob("*") if ".snakemake" not in p.parts),
                   key=lambda p: (finished_demo / p.relative_to(copy)).stat().st_mtime)  # fmt: skip
    now = time.time()
    for age, path in enumerate(files):  # the worst order: every output older than its inputs
        os.utime(path, (now - age, now - age))
    assert planned(copy, demo_config, "copied")["train"] == TRAINED

    restore = subprocess.run(
        [sys.executable, "-m", "cft.core.restore", "--workdir", str(copy)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert restore.returncode == 0, restore.stderr
    assert re.search(r"restored \d+ output\(s\) to their recorded times; 0 already", restore.stderr)
    assert planned(copy, demo_config, "restored") == {}
    # a config change still reruns its chain on the restored copy
    changed = planned(copy, edited(demo_config, "training.epochs", 2), "epochs")
    assert changed == {"train": TRAINED, **DOWNSTREAM_OF_TRAIN}
