"""The workflow through a real single-node SLURM cluster (scripts/slurm_up.sh), with the
project's slurm profile: every job runs as a SLURM job, the outputs equal a local run's, a
failing job is reported as failed and a rerun completes only what is missing.

Runs when SLURM answers (`sinfo`); .ci/run starts the cluster and sets CFT_REQUIRE_SLURM=1, so
that in CI a missing cluster fails the test instead of skipping it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
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


pytestmark = requires_slurm


def run_workflow(workdir: Path, config: Path, *extra: str, slurm: bool = True):
    """snakemake on the corpus chain of the demo, bounded by timeout -k."""
    cmd = [
        "timeout",
        "-k",
        "10",
        "240",
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "workflow" / "Snakefile"),
    ]
    if slurm:
        cmd += SLURM_PROFILE_ARGS
    else:
        cmd += ["--cores", "2"]
    cmd += [*TARGETS, "--directory", str(workdir), "--configfile", str(config), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **SLURM_ENV}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)


def config_file(tmp_path: Path, name: str, **corpus) -> Path:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["corpus"] = {**config.get("corpus", {}), **corpus}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_demo_chain_runs_as_slurm_jobs_like_a_local_run(tmp_path):
    config = config_file(tmp_path, "demo.yaml")
    before = {job["id"] for job in slurm_jobs()}
    on_slurm = tmp_path / "slurm"
    on_slurm.mkdir()
    result = run_workflow(on_slurm, config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stderr) == {"corpus": 2, "demo_data": 2, "total": 4}

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


def test_a_signalled_train_job_checkpoints_and_its_retry_resumes_there(tmp_path, tiny_model):
    """`scancel --signal=TERM` as docs/cluster.md recommends, mid-training, with no periodic
    checkpoint due (save_steps 100000): the train job's step (the trainer alone) saves a
    complete checkpoint and fails; Snakemake's retry resumes from that checkpoint and
    publishes the model; the record lists both attempts with their SLURM jobs."""
    import signal as _signal
    import time

    from cft.core.paths import base_model_dir, checkpoint_dir, model_dir, tokenized_dir

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["grid"] = {"domains": ["biomed"], "models": ["tiny"], "methods": ["chat", "cpt"]}
    config["models"] = {"tiny": {"source": "local", "path": str(tiny_model), "dtype": "float32"}}
    config["training"].update(epochs=15, save_steps=100000, precision="fp32")
    config["training"]["resources"]["default"].update(mem_mb=3000, runtime=10)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    seed = config["seed"]
    target = model_dir("biomed", "tiny", "cpt", seed)
    workflow = [
        str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(tmp_path / "config.yaml"),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **SLURM_ENV}
    # the train job's inputs locally (what is tested is the train job on SLURM)
    inputs = [tokenized_dir("biomed", "tiny", "cpt"), base_model_dir("tiny")]
    built = subprocess.run([*workflow, "--cores", "2", *inputs], capture_output=True, text=True,
                           env=env, cwd=workdir)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    cmd = [*workflow, *SLURM_PROFILE_ARGS, "--retries", "1", target]
    controller = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=workdir)  # fmt: skip
    checkpoints = workdir / checkpoint_dir("biomed", "tiny", "cpt", seed)
    deadline = time.monotonic() + 240
    while not list((checkpoints / "tensorboard").rglob("events.out.*")):  # training has begun
        assert controller.poll() is None, controller.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(2)
    train_job = next(j["id"] for j in slurm_jobs() if j["comment"].startswith("rule_train")
                     and j["state"] == "RUNNING")  # fmt: skip
    subprocess.run(["scancel", f"--signal={_signal.SIGTERM.name.removeprefix('SIG')}",
                    train_job], check=True)  # fmt: skip
    _, stderr = controller.communicate(timeout=300)
    assert controller.returncode == 0, stderr[-3000:]

    record = json.loads((workdir / target / "train_metrics.json").read_text())
    first, second = record["attempts"]
    assert first["slurm_job"] == train_job != second["slurm_job"]
    step = second["resumed_from_step"]
    assert 0 < step < record["optimizer_steps"]  # the signal's checkpoint: none other was due
    log = (workdir / target / "attempts" / "attempt-1.log").read_text()
    assert f"SIGTERM: saving checkpoint-{step}, then stopping" in log
