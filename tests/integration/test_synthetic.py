"""The synthetic experiment: data and function classes against closed forms, the three
conditions, the alignment metric on a model with a known gradient, resume after kill -9, and the
summary against the authors' published curves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch
from conftest import REPO
from unit.test_synthetic import TINY, tiny_config

from cft.synthetic import loop, stages


def test_killed_finetune_resumes_to_the_uninterrupted_result(tmp_path):
    from cft.core.config import load_config

    config = load_config(tiny_config(tmp_path))
    stages.run_pretrain(config, "tiny", 0, tmp_path / "pre", tmp_path / ".pre.work")
    args = dict(pretrained=tmp_path / "pre")
    stages.run_finetune(
        config,
        "tiny",
        "polynomial",
        "cft",
        0,
        out_dir=tmp_path / "a",
        work_dir=tmp_path / ".a.work",
        **args,
    )

    cmd = [
        sys.executable,
        "-m",
        "cft.synthetic",
        "finetune",
        "--config",
        str(tiny_config(tmp_path)),
        "--scale",
        "tiny",
        "--seed",
        "0",
        "--task",
        "polynomial",
        "--condition",
        "cft",
        "--pretrained",
        str(tmp_path / "pre"),
        "--out-dir",
        str(tmp_path / "b"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = tmp_path / ".b.work" / loop.CHECKPOINT
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b").exists()
    step = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < step < TINY.finetune_steps
    subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True)
    a = (tmp_path / "a" / "metrics.csv").read_text()
    b = (tmp_path / "b" / "metrics.csv").read_text()
    rows_a = np.loadtxt(a.splitlines()[1:], delimiter=",")
    rows_b = np.loadtxt(b.splitlines()[1:], delimiter=",")
    np.testing.assert_allclose(rows_b, rows_a, rtol=1e-4, atol=1e-6)
