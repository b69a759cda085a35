"""Training: batch arithmetic, loss masking and normalisation through the project's Trainer,
kill -9 and resume equal to an uninterrupted run, config errors, and the SLURM options the
paper's train jobs get from the real SLURM executor plugin."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import replace

import pytest
from conftest import REPO

from cft.core.config import ConfigError, validate_config
from cft.core.settings import stage_digest
from cft.training.checkpoints import checkpoint_due, run_key
from cft.training.launch import BatchPlan, launch_command, parallelism_of, plan_batch
from cft.training.metrics import (
    ModelShape,
    RunFacts,
    attention_span,
    flops_per_token,
    metrics_record,
    peak_flops,
    throughput_metrics,
)
from cft.training.recipe import Job, Recipe

TWO_NODE_JOB = {
    "nodes": 2,
    "gpus_per_node": 8,
    "gpu_model": "a100",
    "cpus_per_task": 32,
    "mem_mb": 480000,
    "cpu_processes_per_node": 1,
}


def run_facts(paper_config, **changes) -> RunFacts:
    config = validate_config({**paper_config, "seed": 7})
    config["training"] = {**config["training"], "max_seq_len": 4096, "epochs": 1}
    job = Job(
        config=config,
        domain="medical",
        model="llama-2-7b-chat",
        method="cft",
        tokenized_dir="results/tokenized/x",
        base_model_dir="resources/models/x",
        out_dir="results/models/x",
        checkpoint_dir="results/checkpoints/x",
        resources={},
    )
    facts = RunFacts(
        job=job,
        recipe=Recipe.of(config),
        precision={"chosen": "bf16"},
        device_name="NVIDIA H100 80GB HBM3",
        world=4,
        fsdp=True,
        plan=BatchPlan(per_device_batch_size=8, gradient_accumulation_steps=4, world_size=4),
        attn_implementation="sdpa",
        loss_chunk_rows=None,
        shape=ModelShape(
            parameters=6_738_415_616,
            embedding_parameters=32000 * 4096,
            attention_width=4096,
            layer_windows=(None,) * 32,
        ),
        weight_readers=[1, 0, 0, 0],
        resumed_from=None,
        optimizer_steps=100,
        steps_this_run=100,
        tokens=4_000_000,
        loss_tokens=3_000_000,
        attention_pairs=4_000_000 * 4096,  # full blocks of 4,096 tokens
        sliding_pairs=0,
        loop_seconds=1000.0,
        checkpoint_seconds=50.0,
        final_save_seconds=20.0,
        wall_seconds=1100.0,
        peak_memory_mb=60_000.0,
        loss_rows=[{"step": 50, "loss": 2.0}, {"step": 100, "loss": 1.8}],
        eval_loss=1.7,
        model_fingerprint="sha256:m",
        data_stats={"fingerprint": "sha256:d"},
    )
    return replace(facts, **changes)


@pytest.mark.parametrize(
    ("gpus", "micro", "accumulation"), [(1, 8, 16), (4, 8, 4), (8, 8, 2), (16, 8, 1)]
)
def test_global_batch_is_kept_for_any_gpu_count(gpus, micro, accumulation):
    plan = plan_batch(128, gpus, max_per_device=8)
    assert (plan.per_device_batch_size, plan.gradient_accumulation_steps) == (micro, accumulation)
    assert plan.global_batch_size == 128


def test_micro_batch_divides_the_per_device_share():
    plan = plan_batch(96, 8, max_per_device=5)  # 12 per device: micro 4 x 3 steps
    assert (plan.per_device_batch_size, plan.gradient_accumulation_steps) == (4, 3)


def test_global_batch_not_divisible_by_devices_is_an_error():
    with pytest.raises(ConfigError, match=r"global_batch_size = 100 is not divisible by the 8"):
        plan_batch(100, 8, max_per_device=8)


def test_launch_commands(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    cpu = {"nodes": 1, "gpus_per_node": 0, "cpu_processes_per_node": 1}
    assert launch_command(cpu) == [sys.executable]
    one_node = launch_command({"nodes": 1, "gpus_per_node": 8, "cpu_processes_per_node": 1})
    assert one_node[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=8", "--standalone"]
    cpu_fsdp = launch_command({"nodes": 1, "gpus_per_node": 0, "cpu_processes_per_node": 2})
    assert cpu_fsdp[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone"]


def test_multi_node_step_states_its_cpus_gpus_and_memory():
    """srun (SLURM >= 22.05) does not inherit --cpus-per-task from the allocation: without it
    every node's torchrun and its 8 workers would share one core."""
    multi = launch_command(TWO_NODE_JOB, host="gpu001", port=41234)
    step, torchrun = multi[: multi.index(sys.executable)], multi[multi.index(sys.executable) :]
    assert step[:4] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    assert "--cpus-per-task=32" in step and "--gres=gpu:a100:8" in step
    assert "--mem=480000M" in step
    assert "--rdzv-backend=c10d" in torchrun and "--rdzv-endpoint=gpu001:41234" in torchrun
    assert "--nnodes=2" in torchrun and "--nproc-per-node=8" in torchrun


def test_the_mesh_plan_for_one_and_two_nodes(paper_config):
    """One node: a flat FSDP2 mesh over its 8 GPUs. Two nodes: HSDP by default (shard within
    a node, replicate across), or one flat mesh over 16 with `multi_node_sharding: full`."""
    recipe = Recipe.of(validate_config(paper_config))
    assert parallelism_of(recipe, 8, cuda=True).mesh == (1, 8)
    assert parallelism_of(recipe, 16, cuda=True, nodes=2).mesh == (2, 8)
    full = dataclasses.replace(recipe, multi_node_sharding="full")
    assert parallelism_of(full, 16, cuda=True, nodes=2).mesh == (1, 16)
    # one GPU: FSDP2 over a 1-rank mesh when torchrun started it, none in a plain process
    assert parallelism_of(recipe, 1, cuda=True, launched=True).mesh == (1, 1)
    assert parallelism_of(recipe, 1, cuda=True).mesh is None
    assert parallelism_of(dataclasses.replace(recipe, fsdp="no_shard"), 8, cuda=True).mesh is None


def test_the_rendezvous_is_on_the_allocations_first_node(monkeypatch, tmp_path):
    """torchrun's c10d store listens on the first node of SLURM_JOB_NODELIST, as SLURM's own
    `scontrol show hostnames` expands it (a stand-in scontrol on PATH here; the SLURM tests run
    the real one)."""
    from cft.training.launch import rendezvous_host

    scontrol = tmp_path / "scontrol"
    scontrol.write_text(
        '#!/bin/sh\n[ "$1 $2 $3" = "show hostnames gpu[07-08]" ] && printf "gpu07\\ngpu08\\n"\n'
    )
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    assert rendezvous_host() == "gpu07"
    step = launch_command(TWO_NODE_JOB)
    assert any(arg.startswith("--rdzv-endpoint=gpu07:") for arg in step)


def test_rendezvous_port_is_not_fixed():
    ports = {launch_command(TWO_NODE_JOB, host="127.0.0.1")[-2].rsplit(":", 1)[1] for _ in range(5)}
    assert "29500" not in ports and len(ports) > 1


def test_unknown_attention_implementation_is_a_config_error(demo_config):
    demo_config["training"]["attn_implementation"] = "flash_attention_3"
    with pytest.raises(ConfigError, match=r"'training.attn_implementation' = 'flash_attention_3'"):
        validate_config(demo_config)


def test_resources_for_an_unknown_model_are_a_config_error(demo_config):
    demo_config["training"]["resources"] = {"llama-9b": {"nodes": 2}}
    with pytest.raises(ConfigError, match=r"'training.resources.llama-9b' names no model"):
        validate_config(demo_config)


def test_flops_per_token_leaves_out_the_input_embedding():
    """torchtitan's convention: the embedding lookup is no matmul, so its parameters do not
    count; a model that is all embedding costs only attention FLOPs."""
    assert flops_per_token(1000, 1000, 8, [16, 16]) == 12 * 2 * 8 * 16
    llama7b = flops_per_token(6_738_415_616, 32000 * 4096, 4096, [4096] * 32)
    assert llama7b == 6 * (6_738_415_616 - 32000 * 4096) + 12 * 32 * 4096 * 4096


def test_peak_flops_matches_the_most_specific_device_name():
    sxm, pcie, nvl = (peak_flops(f"NVIDIA H100 {v}") for v in ("80GB HBM3", "PCIe", "NVL"))
    assert pcie < nvl < sxm  # "H100 PCIe" is not taken for the SXM part it also names
    assert peak_flops("nvidia h100 pcie") == pcie  # as the driver spells it, in any case
    assert peak_flops("NVIDIA A100-SXM4-80GB") < pcie
    for unknown in ("Tesla V100-SXM2-32GB", "", None):
        assert peak_flops(unknown) is None  # no MFU rather than a guessed peak


def test_throughput_excludes_checkpoint_time_and_computes_mfu():
    # 1,000 tokens in a 2 s loop on 2 devices at 1e6 FLOPs/token against a 1e9 peak.
    speed = throughput_metrics(
        tokens=1000,
        loss_tokens=600,
        loop_seconds=2.0,
        world=2,
        flops_per_token=1e6,
        peak_flops_per_device=1e9,
    )
    assert speed["tokens_per_s"] == 500 and speed["tokens_per_s_per_device"] == 250
    assert speed["loss_tokens_per_s"] == 300
    assert speed["mfu"] == pytest.approx(0.25)
    assert (
        throughput_metrics(
            tokens=1,
            loss_tokens=1,
            loop_seconds=1,
            world=1,
            flops_per_token=1,
            peak_flops_per_device=None,
        )["mfu"]
        is None
    )


def test_metrics_record_of_a_run(paper_config):
    facts = run_facts(paper_config)
    record = metrics_record(facts)
    assert (record["domain"], record["model"], record["method"], record["seed"]) == (
        "medical",
        "llama-2-7b-chat",
        "cft",
        7,
    )
    assert record["parallelism"] == "fsdp2" and record["world_size"] == 4
    assert record["ranks_that_read_weights"] == [0]
    assert record["batch"]["global_batch_size"] == 8 * 4 * 4
    assert record["final_loss"] == 1.8  # the last logged loss, not the mean
    assert record["tokens_per_s_per_device"] == 4_000_000 / 1000 / 4
    per_token = 6 * (6_738_415_616 - 32000 * 4096) + 12 * 32 * 4096 * 4096
    assert record["mfu"] == pytest.approx(per_token * 1000 / peak_flops("H100"))
    assert record["provenance"]["backend"] == "cuda"
    assert record["data"]["fingerprint"] == "sha256:d"
    # the digest the train rule reruns on, of the same settings slice
    digest = stage_digest(facts.job.config, "train", model="llama-2-7b-chat")
    assert record["provenance"]["stage_digest"] == digest


def test_mfu_counts_attention_over_the_real_sequence_lengths(paper_config):
    """Document chunks of 800 tokens under max_seq_len 4096: the attention term uses the
    token-weighted mean span sum(T^2)/sum(T), which the Trainer counts from the masks."""
    chunks = [800] * 5000
    facts = run_facts(paper_config, tokens=sum(chunks), attention_pairs=sum(t * t for t in chunks))
    record = metrics_record(facts)
    assert record["attention_span"] == 800 and record["seq_len"] == 4096
    per_token = 6 * (6_738_415_616 - 32000 * 4096) + 12 * 32 * 4096 * 800
    assert record["flops_per_token"] == per_token
    mixed = [4096, 1024]  # one full block and one short chunk
    assert attention_span(sum(mixed), sum(t * t for t in mixed)) == (4096**2 + 1024**2) / 5120


def test_flops_count_sliding_layers_over_their_window_and_the_query_width(paper_config):
    """Gemma-3-like: five sliding layers of window 512 to one full layer, 8 query heads of 256
    (width 2,048, not the hidden size), chunks of 800 tokens: a sliding layer's span is
    min(800, 512), a full layer's 800."""
    chunks = [800] * 1000
    shape = ModelShape(
        parameters=1_000_000_000, embedding_parameters=0, attention_width=8 * 256,
        layer_windows=(512, 512, 512, 512, 512, None),
    )  # fmt: skip
    facts = run_facts(
        paper_config, shape=shape, tokens=sum(chunks),
        attention_pairs=sum(t * t for t in chunks),
        sliding_pairs=sum(t * min(t, 512) for t in chunks),
    )  # fmt: skip
    record = metrics_record(facts)
    assert record["attention_span"] == 800 and record["sliding_attention_span"] == 512
    assert record["sliding_layers"] == 5 and record["layers"] == 6
    assert record["flops_per_token"] == 6 * 1_000_000_000 + 12 * 2048 * (5 * 512 + 800)
    without_windows = metrics_record(run_facts(paper_config))
    assert without_windows["sliding_attention_span"] is None
    assert without_windows["sliding_layers"] == 0


def test_metrics_record_on_cpu_and_without_logged_losses(paper_config):
    facts = run_facts(paper_config, device_name=None, world=1, fsdp=False, loss_rows=[])
    record = metrics_record(facts)
    assert record["device"].startswith("cpu (") and record["mfu"] is None
    assert record["parallelism"] == "single" and record["final_loss"] is None
    assert record["provenance"]["backend"] == "cpu"
    assert metrics_record(run_facts(paper_config, world=2, fsdp=False))["parallelism"] == "ddp"


def test_the_recipe_has_one_field_per_schema_key(demo_config, paper_config):
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    keys = set(schema["properties"]["training"]["properties"])
    assert {f.name for f in dataclasses.fields(Recipe)} == keys
    for config in (demo_config, paper_config):
        validate_config(config)
        assert Recipe.of(config).as_dict() == config["training"]  # nothing lost or added
    with pytest.raises(ConfigError, match=r"unknown keys \['learnin_rate'\]"):
        Recipe.of({"training": {**demo_config["training"], "learnin_rate": 1}})


def test_run_key_changes_with_every_input_that_makes_the_run():
    inputs = ({"learning_rate": 1e-5}, 0, "sha256:d", "sha256:m", 128, 4)
    key = run_key(*inputs)
    assert run_key(*inputs) == key
    for position, other in enumerate(({"learning_rate": 2e-5}, 1, "sha256:e", "sha256:n", 64, 8)):
        changed = list(inputs)
        changed[position] = other
        assert run_key(*changed) != key, position


@pytest.mark.parametrize(
    ("loss", "grad_norm", "first", "ratio", "diverged"),
    [
        (2.0, 1.0, None, 3.0, False),
        (float("nan"), 1.0, 2.0, 3.0, True),
        (2.0, float("inf"), 2.0, 3.0, True),
        (2.0, 0.0, 2.0, 3.0, True),  # a saturated model: nothing left to learn from
        (6.1, 1.0, 2.0, 3.0, True),
        (5.9, 1.0, 2.0, 3.0, False),
        (60.0, 1.0, 2.0, None, False),  # the ratio check is off
    ],
)
def test_divergence_reason(loss, grad_norm, first, ratio, diverged):
    from cft.training.trainer import divergence_reason

    assert (divergence_reason(loss, grad_norm, first, ratio) is not None) == diverged


def test_the_checkpoint_cadence_follows_the_measured_checkpoint_cost():
    # every 30 minutes while a checkpoint is cheap
    assert not checkpoint_due(29 * 60, None, 30, 0.05)
    assert checkpoint_due(30 * 60, 10.0, 30, 0.05)
    # a 170 s checkpoint at 5% overhead: at least 3,400 s between checkpoints
    assert not checkpoint_due(3000, 170.0, 30, 0.05)
    assert checkpoint_due(3400, 170.0, 30, 0.05)


def test_the_paper_run_checkpoints_by_time(paper_config):
    """A fixed 50 steps on ~2,000-step runs wrote 40 checkpoints of up to 84 GB each."""
    recipe = Recipe.of(validate_config(paper_config))
    assert recipe.save_every_minutes and recipe.checkpoint_max_overhead <= 0.1


def test_the_runs_mean_loss_weights_each_log_by_the_steps_it_covers():
    from cft.training.metrics import run_loss_mean

    # logs at steps 1, 4 and 5: the second is the mean of steps 2-4
    rows = [{"step": 1, "loss": 4.0}, {"step": 4, "loss": 2.0}, {"step": 5, "loss": 1.0}]
    assert run_loss_mean(rows) == pytest.approx((4.0 + 3 * 2.0 + 1.0) / 5)
    assert run_loss_mean([]) is None


def test_inside_a_slurm_job_one_node_trains_in_a_job_step_of_its_own(monkeypatch):
    """Signals from scancel --signal and sbatch --signal go to a job's steps: the trainer
    must be one, apart from the batch step's Snakemake processes."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    one = {"nodes": 1, "gpus_per_node": 0, "cpu_processes_per_node": 1, "cpus_per_task": 4,
           "mem_mb": 16000}  # fmt: skip
    command = launch_command(one)
    assert command == [
        "srun", "--nodes=1", "--ntasks=1", "--ntasks-per-node=1", "--cpus-per-task=4",
        "--mem=16000M", "--kill-on-bad-exit=1", sys.executable,
    ]  # fmt: skip
    gpus = launch_command({**one, "gpus_per_node": 8, "gpu_model": "h100"})
    assert gpus[0] == "srun" and "--gres=gpu:h100:8" in gpus
    assert gpus[gpus.index(sys.executable) :][-2:] == ["--nproc-per-node=8", "--standalone"]
    assert launch_command(one, in_allocation=False) == [sys.executable]
