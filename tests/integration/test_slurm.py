"""The workflow through a real single-node SLURM cluster (scripts/slurm_up.sh), with the
project's slurm profile: every job runs as a SLURM job, the outputs equal a local run's, a
failing job is reported as failed and a rerun completes only what is missing; a signalled
train job checkpoints and resumes; a crashed controller's jobs are recovered without any run
training twice (cft.cluster.recover).

Runs when SLURM answers (`sinfo`); .ci/run starts the cluster and sets CFT_REQUIRE_SLURM=1, so
that in CI a missing cluster fails the test instead of skipping it."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import (
    BIN,
    REPO,
    SLURM_ENV,
    SLURM_PROFILE_ARGS,
    job_counts,
    requires_slurm,
    slurm_jobs,
)

TARGETS = [f"results/corpus/{domain}/stats.json" for domain in ("biomed", "finance")]
SLURM_RUN_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", **SLURM_ENV}


pytestmark = requires_slurm


def workflow_command(workdir: Path, config: Path, *extra: str, slurm: bool = True) -> list:
    """snakemake on the corpus chain of the demo."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile")]
    cmd += SLURM_PROFILE_ARGS if slurm else ["--cores", "2"]
    return [*cmd, *TARGETS, "--directory", str(workdir), "--configfile", str(config), *extra]


def run_workflow(workdir: Path, config: Path, *extra: str, slurm: bool = True):
    """The corpus chain of the demo, bounded by timeout -k."""
    cmd = ["timeout", "-k", "10", "240", *workflow_command(workdir, config, *extra, slurm=slurm)]
    return subprocess.run(cmd, capture_output=True, text=True, env=SLURM_RUN_ENV, cwd=workdir)


def config_file(tmp_path: Path, name: str, **corpus) -> Path:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["corpus"] = {**config.get("corpus", {}), **corpus}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_demo_chain_runs_as_slurm_jobs_like_a_local_run_across_a_controller_crash(tmp_path):
    """Every job a SLURM job, the outputs equal a local run's, though the controller is killed
    (SIGKILL) while its first jobs run: `cft.cluster.recover --wait` (docs/cluster.md) lets
    them finish and records their metadata (the plugin's jobs record none), and the restart
    runs only the rest: each of the chain's 4 jobs ran once."""
    config = config_file(tmp_path, "demo.yaml")
    before = {job["id"] for job in slurm_jobs()}
    on_slurm = tmp_path / "slurm"
    on_slurm.mkdir()
    cmd = workflow_command(on_slurm, config)
    controller = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=SLURM_RUN_ENV, cwd=on_slurm)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (running := [j for j in slurm_jobs() if j["state"] == "RUNNING"
                           and j["comment"].startswith("rule_demo_data")]):  # fmt: skip
        assert controller.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    controller.kill()
    controller.communicate()
    recovered = subprocess.run(
        [str(BIN / "python"), "-m", "cft.cluster.recover", "--wait", "--poll", "1", "--",
         *cmd[1:]], capture_output=True, text=True, env=SLURM_RUN_ENV, cwd=on_slurm,
    )  # fmt: skip
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    completed = recovered.stderr.count(": COMPLETED (demo_data:domain=")
    assert completed == len(running) > 0
    result = run_workflow(on_slurm, config)
    assert result.returncode == 0, result.stderr[-3000:]
    left = {"corpus": 2, "demo_data": 2 - completed, "total": 4 - completed}
    assert job_counts(result.stderr) == {rule: n for rule, n in left.items() if n}
    planned = run_workflow(on_slurm, config, "-n")
    assert "Nothing to be done" in planned.stdout + planned.stderr
    assert "missing provenance/metadata" not in planned.stdout + planned.stderr

    submitted = [job for job in slurm_jobs() if job["id"] not in before]
    assert len(submitted) == 4 and all(job["state"] == "COMPLETED" for job in submitted)
    comments = sorted(job["comment"] for job in submitted)
    assert comments == [
        "rule_corpus_wildcards_biomed",
        "rule_corpus_wildcards_finance",
        "rule_demo_data_wildcards_biomed",
        "rule_demo_data_wildcards_finance",
    ]

    local = tmp_path / "local"
    local.mkdir()
    assert run_workflow(local, config, slurm=False).returncode == 0
    for domain in ("biomed", "finance"):
        ours = pd.read_parquet(on_slurm / f"results/corpus/{domain}/documents.parquet")
        theirs = pd.read_parquet(local / f"results/corpus/{domain}/documents.parquet")
        pd.testing.assert_frame_equal(ours, theirs)
        stats = [
            json.loads((d / f"results/corpus/{domain}/stats.json").read_text())
            for d in (on_slurm, local)
        ]
        for record in stats:
            record.pop("provenance")
        assert stats[0] == stats[1]


def test_failed_job_is_reported_and_a_rerun_completes_only_what_is_missing(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    # every demo document is longer than 50 characters: the corpus jobs fail
    broken = config_file(tmp_path, "broken.yaml", max_chars=50)
    failed = run_workflow(workdir, broken, "--keep-going")
    assert failed.returncode != 0
    assert "Error in rule corpus" in failed.stderr
    assert (workdir / "results/demo_data/biomed/documents.jsonl").is_file()
    assert not (workdir / "results/corpus/biomed/stats.json").exists()

    fixed = config_file(tmp_path, "fixed.yaml")
    rerun = run_workflow(workdir, fixed)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert job_counts(rerun.stderr) == {"corpus": 2, "total": 2}  # the demo data is kept


@dataclass
class TrainRun:
    """One tiny-model train job (biomed, cpt) run through the slurm profile: its inputs built
    locally (what is tested is the train job on SLURM), the controller's command."""

    workdir: Path
    workflow: list[str]
    target: Path
    checkpoints: Path

    def start_controller(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([*self.workflow, *SLURM_PROFILE_ARGS, *extra, str(self.target)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=SLURM_RUN_ENV, cwd=self.workdir)  # fmt: skip

    def wait_for_training(self, controller: subprocess.Popen) -> str:
        """Wait until the trainer logs its first step; the SLURM job running it."""
        deadline = time.monotonic() + 240
        while not list((self.checkpoints / "tensorboard").rglob("events.out.*")):
            assert controller.poll() is None, controller.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2)
        return next(job["id"] for job in slurm_jobs() if job["comment"].startswith("rule_train")
                    and job["state"] == "RUNNING")  # fmt: skip

    def record(self) -> dict:
        return json.loads((self.workdir / self.target / "train_metrics.json").read_text())

    def attempt_log(self, number: int) -> str:
        return (self.workdir / self.target / "attempts" / f"attempt-{number}.log").read_text()


@pytest.fixture(scope="module")
def train_inputs(tmp_path_factory, tiny_model) -> Path:
    """A config of 15 epochs of the tiny model with no periodic checkpoint due (save_steps
    100000) and, built locally once, its train job's inputs (what is tested is the train job
    on SLURM): `config.yaml` and `work/`."""
    from cft.core.paths import base_model_dir, tokenized_dir

    root = tmp_path_factory.mktemp("train_inputs")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["grid"] = {"domains": ["biomed"], "models": ["tiny"], "methods": ["chat", "cpt"]}
    config["models"] = {"tiny": {"source": "local", "path": str(tiny_model), "dtype": "float32"}}
    config["training"].update(epochs=15, save_steps=100000, precision="fp32")
    config["training"]["resources"]["default"].update(mem_mb=3000, runtime=10)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "work").mkdir()
    inputs = [tokenized_dir("biomed", "tiny", "cpt"), base_model_dir("tiny")]
    built = subprocess.run([*train_workflow(root), "--cores", "2", *inputs], capture_output=True,
                           text=True, env=SLURM_RUN_ENV, cwd=root / "work")  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return root


def train_workflow(root: Path) -> list[str]:
    return [
        str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"),
        "--directory", str(root / "work"), "--configfile", str(root / "config.yaml"),
    ]  # fmt: skip


@pytest.fixture
def train_run(tmp_path, train_inputs) -> TrainRun:
    """A copy of the train inputs (times and Snakemake's metadata kept), for one test."""
    from cft.core.paths import checkpoint_dir, model_dir

    root = tmp_path / "run"
    shutil.copytree(train_inputs, root, symlinks=True)
    seed = yaml.safe_load((root / "config.yaml").read_text())["seed"]
    return TrainRun(root / "work", train_workflow(root), model_dir("biomed", "tiny", "cpt", seed),
                    root / "work" / checkpoint_dir("biomed", "tiny", "cpt", seed))  # fmt: skip


def test_a_signalled_train_job_checkpoints_and_its_retry_resumes_there(train_run):
    """`scancel --signal=TERM` as docs/cluster.md recommends, mid-training, with no periodic
    checkpoint due: the train job's step (the trainer alone) saves a complete checkpoint and
    fails; Snakemake's retry resumes from that checkpoint and publishes the model; the record
    lists both attempts with their SLURM jobs."""
    controller = train_run.start_controller("--retries", "1")
    train_job = train_run.wait_for_training(controller)
    subprocess.run(["scancel", f"--signal={signal.SIGTERM.name.removeprefix('SIG')}",
                    train_job], check=True)  # fmt: skip
    _, stderr = controller.communicate(timeout=300)
    assert controller.returncode == 0, stderr[-3000:]

    record = train_run.record()
    first, second = record["attempts"]
    assert first["slurm_job"] == train_job != second["slurm_job"]
    step = second["resumed_from_step"]
    assert 0 < step < record["optimizer_steps"]  # the signal's checkpoint: none other was due
    assert f"SIGTERM: saving checkpoint-{step}, then stopping" in train_run.attempt_log(1)


def test_a_crashed_controller_is_recovered_and_no_run_trains_twice(train_run):
    """The controller killed (SIGKILL) while its train job runs; recovered as docs/cluster.md
    says (`python -m cft.cluster.recover --cancel -- <options>`, then the same command again):
    the orphan checkpoints on its way out and has ended before the restart's job starts, which
    resumes from that checkpoint; the model is published once, with Snakemake's metadata."""
    controller = train_run.start_controller()
    orphan = train_run.wait_for_training(controller)
    controller.kill()
    controller.communicate()
    options = train_run.workflow[1:]  # the crashed run's options, past the executable
    recovered = subprocess.run(
        [str(BIN / "python"), "-m", "cft.cluster.recover", "--cancel", "--poll", "1", "--",
         *options, *SLURM_PROFILE_ARGS],
        capture_output=True, text=True, env=SLURM_RUN_ENV, cwd=train_run.workdir,
    )  # fmt: skip
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    assert f"{orphan}: SIGTERM to its steps (train:domain=biomed," in recovered.stderr
    ended = {job["id"]: job["state"] for job in slurm_jobs()}[orphan]
    assert ended in {"FAILED", "CANCELLED"}, ended  # ended before the restart

    restart = train_run.start_controller()
    _, stderr = restart.communicate(timeout=300)
    assert restart.returncode == 0, stderr[-3000:]
    assert job_counts(stderr) == {"train": 1, "total": 1}

    record = train_run.record()
    first, second = record["attempts"]
    assert first["slurm_job"] == orphan != second["slurm_job"]
    step = second["resumed_from_step"]  # nothing lost: the checkpoint the cancel asked for
    assert 0 < step < record["optimizer_steps"]
    assert f"SIGTERM: saving checkpoint-{step}, then stopping" in train_run.attempt_log(1)
    orphan_end = subprocess.run(["squeue", "-h", "-t", "all", "-j", orphan, "-o", "%e"],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    started = datetime.datetime.fromisoformat(second["started"])
    assert started >= datetime.datetime.fromisoformat(orphan_end.strip()).astimezone()
    published = [n for n in (1, 2) if "attempt(s), final loss" in train_run.attempt_log(n)]
    assert published == [2]
    planned = subprocess.run([*train_run.workflow, "-n", str(train_run.target)],
                             capture_output=True, text=True, env=SLURM_RUN_ENV,
                             cwd=train_run.workdir)  # fmt: skip
    assert "Nothing to be done" in planned.stdout + planned.stderr
    assert "missing provenance/metadata" not in planned.stdout + planned.stderr


def test_recovery_refuses_while_a_controller_still_runs_in_the_directory(tmp_path):
    """Unlocking under a live controller would let two controllers submit the same jobs."""
    (tmp_path / "Snakefile").write_text('rule slow:\n    output: "out"\n    shell: "sleep 60"\n')
    live = subprocess.Popen([str(BIN / "snakemake"), "--cores", "1", "out"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / ".snakemake" / "locks").is_dir() or not any(
            (tmp_path / ".snakemake" / "locks").iterdir()
        ):
            assert live.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        refused = subprocess.run(
            [str(BIN / "python"), "-m", "cft.cluster.recover", "--cancel", "--", "--cores", "1"],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
    finally:
        live.kill()
        live.communicate()
    assert refused.returncode != 0
    assert f"a snakemake controller still runs in {tmp_path} (pid {live.pid})" in refused.stderr
