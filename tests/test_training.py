"""Training: batch arithmetic, loss masking and normalisation through the project's Trainer,
kill -9 and resume equal to an uninterrupted run, config errors, and the SLURM options the
paper's train jobs get from the real SLURM executor plugin."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, SEQ, first_step_gradient, make_job, planned_resources

from cft.config import ConfigError, validate_config
from cft.fingerprints import METRICS_FILE
from cft.training import TrainingError
from cft.training.checkpoints import COMPLETE_MARKER, run_key
from cft.training.launch import BatchPlan, launch_command, parallelism_of, plan_batch
from cft.training.metrics import (
    ModelShape,
    RunFacts,
    flops_per_token,
    lookup_only_parameters,
    metrics_record,
    peak_flops,
    throughput_metrics,
)
from cft.training.recipe import Job, Recipe
from cft.training.run import launch, train
from cft.training.trainer import make_trainer

# ---- batch arithmetic and launch ------------------------------------------------------------


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


def test_launch_checks_the_batch_before_starting(demo_config, tmp_path, tiny_model, tiny_data):
    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, global_batch_size=12)
    job = replace(job, resources={**job.resources, "gpus_per_node": 8})
    with pytest.raises(ConfigError, match="not divisible by the 8 devices"):
        launch(job)
    assert not Path(job.checkpoint_dir).exists()


def test_launch_commands():
    cpu = {"nodes": 1, "gpus_per_node": 0, "cpu_processes_per_node": 1}
    assert launch_command(cpu) == [sys.executable]
    one_node = launch_command({"nodes": 1, "gpus_per_node": 8, "cpu_processes_per_node": 1})
    assert one_node[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=8", "--standalone"]
    cpu_fsdp = launch_command({"nodes": 1, "gpus_per_node": 0, "cpu_processes_per_node": 2})
    assert cpu_fsdp[1:] == ["-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone"]


PAPER_13B = {
    "nodes": 2,
    "gpus_per_node": 8,
    "gpu_model": "a100",
    "cpus_per_task": 32,
    "mem_mb": 480000,
    "cpu_processes_per_node": 1,
}


def test_multi_node_step_states_its_cpus_gpus_and_memory():
    """srun (SLURM >= 22.05) does not inherit --cpus-per-task from the allocation: without it
    every node's torchrun and its 8 workers would share one core."""
    multi = launch_command(PAPER_13B, host="gpu001", port=41234)
    step, torchrun = multi[: multi.index(sys.executable)], multi[multi.index(sys.executable) :]
    assert step[:4] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    assert "--cpus-per-task=32" in step and "--gres=gpu:a100:8" in step
    assert "--mem=480000M" in step
    assert "--rdzv-backend=c10d" in torchrun and "--rdzv-endpoint=gpu001:41234" in torchrun
    assert "--nnodes=2" in torchrun and "--nproc-per-node=8" in torchrun


def test_rendezvous_port_is_not_fixed():
    ports = {launch_command(PAPER_13B, host="127.0.0.1")[-2].rsplit(":", 1)[1] for _ in range(5)}
    assert "29500" not in ports and len(ports) > 1


def test_unknown_attention_implementation_is_a_config_error(demo_config):
    demo_config["training"]["attn_implementation"] = "flash_attention_3"
    with pytest.raises(ConfigError, match=r"'training.attn_implementation' = 'flash_attention_3'"):
        validate_config(demo_config)


def test_resources_for_an_unknown_model_are_a_config_error(demo_config):
    demo_config["training"]["resources"] = {"llama-9b": {"nodes": 2}}
    with pytest.raises(ConfigError, match=r"'training.resources.llama-9b' names no model"):
        validate_config(demo_config)


def test_a_tied_embedding_counts_as_the_output_heads_matmul(tiny_model):
    """SmolLM2 and the tiny test model tie the input embedding to the output head: its
    parameters are a matmul on every token there, and a lookup only where untied (Llama-2)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    tied = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert lookup_only_parameters(tied) == 0
    untied = LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                    num_attention_heads=2, tie_word_embeddings=False)
    )  # fmt: skip
    assert lookup_only_parameters(untied) == 64 * 16


def test_flops_per_token_leaves_out_the_input_embedding():
    """torchtitan's convention: the embedding lookup is no matmul, so its parameters do not
    count; a model that is all embedding costs only attention FLOPs."""
    assert flops_per_token(1000, 1000, 2, 8, 16) == 12 * 2 * 8 * 16
    llama7b = flops_per_token(6_738_415_616, 32000 * 4096, 32, 4096, 4096)
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


def run_facts(demo_config, **changes) -> RunFacts:
    config = validate_config({**demo_config, "seed": 7})
    config["training"] = {**config["training"], "max_seq_len": 4096, "epochs": 1}
    job = Job(
        config=config,
        domain="medical",
        model="llama2-7b",
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
        shape=ModelShape(
            parameters=6_738_415_616,
            embedding_parameters=32000 * 4096,
            num_hidden_layers=32,
            hidden_size=4096,
        ),
        weight_readers=[1, 0, 0, 0],
        resumed_from=None,
        optimizer_steps=100,
        steps_this_run=100,
        tokens=4_000_000,
        loss_tokens=3_000_000,
        loop_seconds=1000.0,
        checkpoint_seconds=50.0,
        final_save_seconds=20.0,
        wall_seconds=1100.0,
        peak_memory_mb=60_000.0,
        train_loss_mean=1.9,
        loss_rows=[{"step": 50, "loss": 2.0}, {"step": 100, "loss": 1.8}],
        eval_loss=1.7,
        model_fingerprint="sha256:m",
        data_stats={"fingerprint": "sha256:d"},
    )
    return replace(facts, **changes)


def test_metrics_record_of_a_run(demo_config):
    record = metrics_record(run_facts(demo_config))
    assert (record["domain"], record["model"], record["method"], record["seed"]) == (
        "medical",
        "llama2-7b",
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


def test_metrics_record_on_cpu_and_without_logged_losses(demo_config):
    facts = run_facts(demo_config, device_name=None, world=1, fsdp=False, loss_rows=[])
    record = metrics_record(facts)
    assert record["device"].startswith("cpu (") and record["mfu"] is None
    assert record["parallelism"] == "single" and record["final_loss"] is None
    assert record["provenance"]["backend"] == "cpu"
    assert metrics_record(run_facts(demo_config, world=2, fsdp=False))["parallelism"] == "ddp"


def test_the_recipe_has_one_field_per_schema_key(demo_config, paper_config):
    import yaml

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    keys = set(schema["properties"]["training"]["properties"])
    assert {f.name for f in dataclasses.fields(Recipe)} == keys
    for config in (demo_config, paper_config):
        validate_config(config)
        assert Recipe.of(config).as_dict() == config["training"]  # nothing lost or added
    with pytest.raises(ConfigError, match=r"unknown keys \['learnin_rate'\]"):
        Recipe.of({"training": {**demo_config["training"], "learnin_rate": 1}})


def test_a_job_resolves_its_recipe_once_typed_and_leaves_the_config_alone(
    demo_config, tmp_path, tiny_model, tiny_data
):
    from cft.devices import native_bf16

    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, precision="auto")
    recipe = job.recipe
    assert recipe is job.recipe  # resolved once, then shared by every part of training
    assert recipe.precision == ("bf16" if native_bf16(cuda=False)[0] else "fp32")
    assert job.precision_reason  # what the machine's probe said
    assert job.config["training"]["precision"] == "auto"  # nothing written back
    assert recipe.lora.target_modules[0] == "q_proj" and recipe.divergence.max_loss_ratio == 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.learning_rate = 1.0
    # the workers rebuild the same job from its JSON spec
    job.save(tmp_path / "job.json")
    assert Job.load(tmp_path / "job.json").recipe == recipe


def test_run_key_changes_with_every_input_that_makes_the_run():
    inputs = ({"learning_rate": 1e-5}, 0, "sha256:d", "sha256:m", 128, 4)
    key = run_key(*inputs)
    assert run_key(*inputs) == key
    for position, other in enumerate(({"learning_rate": 2e-5}, 1, "sha256:e", "sha256:n", 64, 8)):
        changed = list(inputs)
        changed[position] = other
        assert run_key(*changed) != key, position


# ---- the loss: masking and normalisation ----------------------------------------------------


def test_only_unmasked_labels_reach_the_loss(demo_config, tmp_path, tiny_model, tiny_data):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    job = make_job(demo_config, tmp_path, tiny_model, tiny_data)
    parallel = parallelism_of(job.recipe, 1, cuda=False)
    trainer = make_trainer(job, model, None, plan_batch(4, 1, 4), parallel)
    rng = np.random.default_rng(3)
    ids = torch.tensor(rng.integers(0, 1000, size=(2, SEQ)))
    labels = torch.full_like(ids, -100)
    kept = [(0, 5), (0, 17), (1, 9)]  # k = 3 tokens carry the loss
    for row, col in kept:
        labels[row, col] = ids[row, col]
    inputs = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    loss = trainer.compute_loss(model, inputs)
    logits = model(input_ids=ids).logits
    expected = torch.stack(
        [torch.nn.functional.cross_entropy(logits[r, c - 1], ids[r, c]) for r, c in kept]
    ).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_micro_batches_give_the_same_gradient_as_one_batch(
    demo_config, tmp_path, tiny_model, tiny_data
):
    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, max_grad_norm=1e9)
    whole = first_step_gradient(job, tiny_model, plan_batch(4, 1, max_per_device=4))
    split = first_step_gradient(job, tiny_model, plan_batch(4, 1, max_per_device=1))
    assert set(whole) == set(split)
    for name, grad in whole.items():
        torch.testing.assert_close(split[name], grad, rtol=1e-4, atol=1e-7)

    # The blocks carry different numbers of loss tokens, so a mean of per-micro-batch means
    # (vectorlm's loss) would weight them differently: the test above can tell the two apart.
    from datasets import load_from_disk

    labels = np.array(load_from_disk(job.tokenized_dir)["train"].select(range(4))["labels"])
    counts = (labels[:, 1:] != -100).sum(axis=1)
    assert len(set(counts.tolist())) > 1


# ---- checkpoints: kill -9 and resume ---------------------------------------------------------


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_killed_run_resumes_to_the_uninterrupted_result(
    demo_config, tmp_path, tiny_model, tiny_data
):
    settings = {"epochs": 4, "save_steps": 4}  # 12 steps per epoch, 48 steps
    reference = make_job(demo_config, tmp_path / "a", tiny_model, tiny_data, **settings)
    train(reference)

    job = make_job(demo_config, tmp_path / "b", tiny_model, tiny_data, **settings)
    spec = tmp_path / "job.json"
    job.save(spec)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cft.training", "--job", str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = Path(job.checkpoint_dir)
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob(f"checkpoint-*/{COMPLETE_MARKER}")):
        assert proc.poll() is None, "the training process ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not Path(job.out_dir).exists(), "killed before the end: no model folder may exist"

    metrics = train(job)  # the rerun
    assert metrics["resumed_from"] is not None
    assert 0 < metrics["steps_this_run"] < metrics["optimizer_steps"] == 48
    resumed, uninterrupted = weights(Path(job.out_dir)), weights(Path(reference.out_dir))
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)


def test_finished_run_writes_model_metrics_and_curves(demo_config, tmp_path, tiny_model, tiny_data):
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, epochs=1)
    metrics = train(job)
    out = Path(job.out_dir)
    on_disk = json.loads((out / METRICS_FILE).read_text())
    assert on_disk["optimizer_steps"] == 12 == metrics["optimizer_steps"]
    assert on_disk["tokens_this_run"] == 48 * SEQ - 5  # every non-pad token of the 48 blocks
    assert on_disk["tokens_per_s"] > 0 and on_disk["mfu"] is None  # CPU: no peak, no MFU
    assert on_disk["eval_loss"] > 0 and on_disk["provenance"]["seed"] == demo_config["seed"]
    curve = (out / "loss_curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,epoch,loss") and len(curve) == 13
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    assert AutoTokenizer.from_pretrained(out).chat_template
    assert not Path(job.checkpoint_dir).exists()  # keep_checkpoints is false by default


# ---- SLURM: the sbatch options of the paper's train jobs ------------------------------------


class _Resources(dict):
    __getattr__ = dict.get


def sbatch_command(resources: dict) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    typed = _Resources({k: int(v) if re.fullmatch(r"\d+", v) else v for k, v in resources.items()})
    job = SimpleNamespace(resources=typed, threads=int(resources["cpus_per_task"]))
    params = {
        "run_uuid": "uuid",
        "slurm_logfile": "log",
        "comment_str": "train",
        "account": "-A acct",
        "partition": "-p gpu",
        "workdir": "",
    }
    return get_submit_command(job, params) + set_gres_string(job)  # as the plugin composes it


def test_paper_train_jobs_become_correct_sbatch_commands():
    jobs = planned_resources("train", "--configfile", "config/paper.yaml")
    assert len(jobs) == 2 * 2 * 4  # domains x models x trained methods
    for output, resources in jobs.items():
        command = sbatch_command(resources)
        assert "--gres=gpu:a100:8" in command and resources["tasks_per_gpu"] == "0"
        assert "--ntasks-per-gpu" not in command  # one task per node starts torchrun
        assert " -t 720" in command and "--mem 480000" in command
        assert "--cpus-per-task=32" in command
        if "llama-2-13b-chat" in output:
            assert "--nodes=2" in command and "--ntasks=2" in command
            assert resources["mpi"] == "srun"
        else:
            assert "--nodes=1" in command and resources["mpi"] == ""


def test_two_node_training_job_gets_the_multi_node_sbatch_options():
    """The paper's 13B train job (2 nodes x 8 GPUs) as the plugin would submit it."""
    jobs = planned_resources("train", "--configfile", "config/paper.yaml")
    resources = jobs["results/models/biomed/llama-2-13b-chat/cft/seed1234"]
    command = sbatch_command(resources)
    for option in (
        "--nodes=2",
        "--ntasks=2",
        "--gres=gpu:a100:8",
        "--cpus-per-task=32",
        "--mem 480000",
        "-t 720",
    ):
        assert option in command
    assert resources["mpi"] == "srun"


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


def test_a_diverging_run_stops_with_an_error_and_keeps_only_good_checkpoints(
    demo_config, tmp_path, tiny_model, tiny_data
):
    job = make_job(
        demo_config, tmp_path, tiny_model, tiny_data, learning_rate=1.0e6, save_steps=1,
        keep_checkpoints=True,
    )  # fmt: skip
    with pytest.raises(TrainingError, match=r"training diverged at step (\d+)") as caught:
        train(job)
    assert not Path(job.out_dir).exists()
    message = str(caught.value)
    last_good = int(message.split("Checkpoints up to step ")[1].split(" ")[0])
    bad_step = int(message.split("diverged at step ")[1].split(":")[0])
    assert last_good < bad_step
    kept = sorted(int(p.name.split("-")[1]) for p in Path(job.checkpoint_dir).glob("checkpoint-*"))
    assert kept == list(range(1, last_good + 1))


def test_tokenized_data_altered_on_disk_are_refused(demo_config, tmp_path, tiny_model, tiny_data):
    from datasets import load_from_disk

    altered = tmp_path / "tokenized"
    data = load_from_disk(str(tiny_data))
    data["train"] = data["train"].select(range(40))  # eight blocks fewer than recorded
    data.save_to_disk(str(altered))
    shutil.copy(tiny_data / "stats.json", altered / "stats.json")
    job = make_job(demo_config, tmp_path, tiny_model, altered)
    with pytest.raises(TrainingError, match="the tokenized data changed after they were written"):
        train(job)
    assert not Path(job.out_dir).exists()


def test_training_refuses_output_and_checkpoint_folders_it_did_not_write(
    demo_config, tmp_path, tiny_model, tiny_data
):
    from cft.io import OutputError

    job = make_job(demo_config, tmp_path, tiny_model, tiny_data)
    for folder in (Path(job.out_dir), Path(job.checkpoint_dir)):
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text("someone's notes\n")
        with pytest.raises(OutputError, match=f"{folder}: refusing to"):
            train(job)
        assert (folder / "notes.txt").read_text() == "someone's notes\n"
        (folder / "notes.txt").unlink()
