"""Shared fixtures: repo paths, snakemake runs, configs and the converted packaged model."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# What makes a test an integration test (marker `integration`, deselected by `make test-fast`):
# its folder, tests/integration, or a fixture that loads a model, indexes lm-eval's tasks,
# starts vLLM or runs the SLURM miniature. Unit tests (tests/unit) use none of them and run no
# snakemake; one that does is refused at collection, so the fast suite stays fast.
INTEGRATION_FIXTURES = frozenset(
    {"converted_smollm2", "tiny_model", "gguf_model", "manager", "vllm_python", "miniature"}
)


def pytest_collection_modifyitems(config, items):
    slurm = [item for item in items if item.get_closest_marker("slurm")]
    if slurm and os.environ.get("CFT_REQUIRE_SLURM") != "1" and not slurm_available():
        skip = pytest.mark.skip(reason="no SLURM cluster (scripts/slurm_up.sh starts one)")
        for item in slurm:
            item.add_marker(skip)
    misplaced = []
    for item in items:
        uses = INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))
        folder = Path(item.path).parent.name
        if folder == "integration" or uses:
            item.add_marker(pytest.mark.integration)
        if folder == "unit" and uses:
            misplaced.append(f"{item.nodeid} uses {', '.join(sorted(uses))}")
    if misplaced:
        raise pytest.UsageError(
            "integration tests in tests/unit; move them to tests/integration:\n  "
            + "\n  ".join(misplaced)
        )


def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (set-up, call and tear-down of its tests), the largest first:
    what docs/tests.md reports of a CI run."""
    seconds: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                path = report.nodeid.partition("::")[0]
                seconds[path] = seconds.get(path, 0.0) + report.duration
    if seconds:
        terminalreporter.write_sep("=", "seconds per test file")
        for path, spent in sorted(seconds.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{spent:8.1f} s  {path}")


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 300, env: dict | None = None):
    """Run the real snakemake CLI of this environment; returns the CompletedProcess. Only
    integration tests run it (a unit test that does fails here, naming itself)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    if current.startswith("tests/unit/") or "/tests/unit/" in current:
        raise RuntimeError(f"{current}: runs snakemake, so it belongs in tests/integration")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def slurm_available() -> bool:
    """A SLURM cluster answers here (scripts/slurm_up.sh starts a single-node one)."""
    if shutil.which("sinfo") is None:
        return False
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and any(
        state in result.stdout for state in ("idle", "mix", "alloc")
    )


# The SLURM tests run when a cluster answers; .ci/run starts one and sets CFT_REQUIRE_SLURM=1,
# so that in CI a missing cluster fails them instead of skipping them. The cluster is asked
# only when such a test is collected: `sinfo` waits about 9 s where no controller answers.
requires_slurm = pytest.mark.slurm

# The project's slurm profile; fast polling only because the test cluster is local.
SLURM_PROFILE_ARGS = (
    "--profile",
    str(REPO / "profiles" / "slurm"),
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
    "--latency-wait",
    "5",
    "--retries",
    "0",
)
SLURM_ENV = {"CFT_SLURM_ACCOUNT": "cft", "CFT_SLURM_PARTITION": "debug"}


def slurm_jobs() -> list[dict]:
    """Jobs slurmctld still knows (finished ones stay for MinJobAge): id, state, comment."""
    out = subprocess.run(
        ["squeue", "-t", "all", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True, check=True
    ).stdout
    return [
        dict(zip(("id", "state", "comment"), line.split("|", 2), strict=True))
        for line in out.splitlines()
    ]


def planned_resources(rule: str, *args: str) -> dict[str, dict]:
    """Each planned job of ``rule`` as {output: resources} from a dry run."""
    out = snakemake("-n", "--forceall", *args).stdout
    jobs = {}
    for block in out.split(f"rule {rule}:")[1:]:
        output = re.search(r"output: (\S+)", block).group(1)
        fields = re.search(r"resources: (.*)", block).group(1)
        jobs[output] = dict(item.split("=", 1) for item in fields.split(", "))
    return jobs


def job_counts(output: str) -> dict[str, int]:
    """Parse snakemake's 'Job stats' table into {rule: count}."""
    section = output.split("Job stats:", 1)[1]
    counts = {}
    for line in section.splitlines()[3:]:
        match = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


@pytest.fixture
def demo_config() -> dict:
    return copy.deepcopy(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))


@pytest.fixture
def paper_config() -> dict:
    return copy.deepcopy(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))


@pytest.fixture(scope="session")
def converted_smollm2(tmp_path_factory) -> Path:
    """The packaged SmolLM2-135M-Instruct converted once per test session (about 30 s)."""
    from cft.core.config import load_config
    from cft.data import base_model

    out = tmp_path_factory.mktemp("base_models") / "smollm2-135m-instruct"
    base_model.run(load_config(REPO / "config" / "config.yaml"), "smollm2-135m-instruct", out)
    return out


@pytest.fixture(scope="session")
def packaged_tokenizer(tmp_path_factory) -> Path:
    """The packaged SmolLM2 tokenizer and chat template, read from the GGUF without its weights
    (about 12 s, once per session), saved as a tokenizer folder."""
    from transformers import AutoTokenizer

    from cft.core.config import load_config
    from cft.data.base_model import packaged_gguf_path

    model = load_config(REPO / "config" / "config.yaml")["models"]["smollm2-135m-instruct"]
    gguf = packaged_gguf_path(model["package"], model["gguf_file"])
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, packaged_tokenizer):
    """A randomly initialised 2-layer Llama with the packaged tokenizer (fast, real code)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from cft.core.fingerprints import record_fingerprint

    tokenizer = AutoTokenizer.from_pretrained(packaged_tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    record_fingerprint(path)  # as the base_model stage records every model it prepares
    return path


def tiny_sliding_model(kind: str, folder: Path, tokenizer_dir: Path, window: int = 8) -> Path:
    """A random tiny model whose attention slides over ``window`` tokens, with the packaged
    tokenizer and its fingerprint record: ``gemma3_text`` (layers alternate sliding and full),
    ``gemma3`` (the same text model in Gemma-3 4B+'s multimodal wrapper, a 1-layer vision
    tower) or ``mistral`` (Mistral v0.1: every layer slides)."""
    import torch
    from transformers import (
        AutoTokenizer,
        Gemma3Config,
        Gemma3ForCausalLM,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        MistralConfig,
        MistralForCausalLM,
    )

    from cft.core.fingerprints import record_fingerprint

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = {
        "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 24, "sliding_window": window, "max_position_embeddings": 256,
    }  # fmt: skip
    text = {**shape, "layer_types": ["sliding_attention", "full_attention"]}
    torch.manual_seed(0)
    if kind == "gemma3_text":
        model = Gemma3ForCausalLM(Gemma3TextConfig(**text))
    elif kind == "gemma3":
        vision = {
            "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "image_size": 28, "patch_size": 14,
        }  # fmt: skip
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
        model = Gemma3ForConditionalGeneration(config)
    elif kind == "mistral":
        model = MistralForCausalLM(MistralConfig(**shape))
    else:
        raise ValueError(f"unknown tiny sliding-window model {kind!r}")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_fingerprint(folder)
    return folder


SEQ = 32


# ---- training: random packed blocks for the tiny model, and a job on them ----------------------


def random_blocks(n: int, seed: int, vocab: int = 49152) -> dict[str, list]:
    """Packed-looking blocks: a masked prompt of varying length, text, padding in the last."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(n, SEQ))
    labels = ids.copy()
    mask = np.ones_like(ids)
    for row in range(n):
        labels[row, : rng.integers(1, SEQ // 2)] = -100
    labels[-1, SEQ - 5 :] = -100
    mask[-1, SEQ - 5 :] = 0
    return {
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "attention_mask": mask.tolist(),
        "prompt_index": [0] * n,
    }


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from datasets import Dataset, DatasetDict

    from cft.core.io import write_json

    path = tmp_path_factory.mktemp("tokenized") / "cft"
    DatasetDict(
        {
            "train": Dataset.from_dict(random_blocks(48, seed=1)),
            "validation": Dataset.from_dict(random_blocks(4, seed=2)),
        }
    ).save_to_disk(str(path))
    from datasets import load_from_disk

    from cft.core.fingerprints import dataset_fingerprint

    # training checks the blocks against the fingerprint the tokenize stage records
    write_json(path / "stats.json", {"fingerprint": dataset_fingerprint(load_from_disk(path))})
    return path


def make_job(config, tmp_path, tiny_model, tiny_data, **training):
    """A training job of the tiny model on the random blocks; ``training`` overrides the recipe."""
    from cft.core.config import validate_config
    from cft.training.launch import train_resources
    from cft.training.recipe import Job

    config = copy.deepcopy(config)
    config["training"].update(
        {
            "max_seq_len": SEQ,
            "epochs": 1,
            "global_batch_size": 4,
            "learning_rate": 1e-3,
            "warmup_ratio": 0.0,
            "precision": "fp32",
            "activation_checkpointing": False,
            "eval_at_end": True,
            **training,
        }
    )
    validate_config(config)
    return Job(
        config=config,
        domain="biomed",
        model="smollm2-135m-instruct",
        method="cft",
        tokenized_dir=str(tiny_data),
        base_model_dir=str(tiny_model),
        out_dir=str(tmp_path / "models" / "cft"),
        checkpoint_dir=str(tmp_path / "checkpoints" / "cft"),
        resources=train_resources(config, "smollm2-135m-instruct"),
    )


def first_step_gradient(job, tiny_model, plan, blocks: int = 4):
    """The gradient the optimizer sees at the first step (after clipping)."""
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, TrainerCallback

    from cft.training.launch import parallelism_of
    from cft.training.trainer import make_trainer

    captured = {}

    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            if not captured:
                captured.update({n: p.grad.clone() for n, p in model.named_parameters()})

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    data = load_from_disk(job.tokenized_dir)["train"].select(range(blocks))
    parallel = parallelism_of(job.recipe, 1, cuda=False)
    trainer = make_trainer(job, model, data, plan, parallel, callbacks=[Capture()])
    trainer.args.report_to = []
    trainer.args.max_steps = 1
    trainer.train()
    return captured


@pytest.fixture
def finben_copies(tmp_path, monkeypatch):
    """The FinBen-format sets laid out like the hub under results/demo_data/finben of a
    scratch working directory (the demo tasks' dataset_path is relative to it)."""
    from cft.data import finben_demo

    counts = finben_demo.write_sets(
        finben_demo.all_sets_under(tmp_path / "results" / "demo_data" / "finben")
    )
    monkeypatch.chdir(tmp_path)
    return counts
