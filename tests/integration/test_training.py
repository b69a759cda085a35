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
import pandas as pd
import pytest
import torch
from conftest import (
    REPO,
    SEQ,
    first_step_gradient,
    make_job,
    planned_resources,
    requires_slurm,
    tiny_sliding_model,
)

from cft.core.config import ConfigError
from cft.core.fingerprints import LOSS_CURVE, METRICS_FILE
from cft.training import TrainingError
from cft.training.checkpoints import COMPLETE_MARKER
from cft.training.launch import parallelism_of, plan_batch
from cft.training.metrics import (
    lookup_only_parameters,
)
from cft.training.recipe import Job
from cft.training.run import launch, train
from cft.training.trainer import make_trainer


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


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


def test_launch_checks_the_batch_before_starting(demo_config, tmp_path, tiny_model, tiny_data):
    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, global_batch_size=12)
    job = replace(job, resources={**job.resources, "gpus_per_node": 8})
    with pytest.raises(ConfigError, match="not divisible by the 8 devices"):
        launch(job)
    assert not Path(job.checkpoint_dir).exists()


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


def test_a_job_resolves_its_recipe_once_typed_and_leaves_the_config_alone(
    demo_config, tmp_path, tiny_model, tiny_data
):
    from cft.core.devices import native_bf16

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


def test_killed_run_resumes_to_the_uninterrupted_result(
    demo_config, tmp_path, tiny_model, tiny_data, caplog
):
    caplog.set_level("INFO")  # as a job's logging is set up (its attempt's log at INFO)
    settings = {"epochs": 4, "save_steps": 4}  # 12 steps per epoch, 48 steps
    reference = make_job(demo_config, tmp_path / "a", tiny_model, tiny_data, **settings)
    whole = train(reference)

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
    # The record is of the whole run: the mean loss and the curve over all 48 steps, as the
    # uninterrupted run's; both attempts listed, each with its own log beside the model.
    assert metrics["train_loss_mean"] == pytest.approx(whole["train_loss_mean"], rel=1e-5)
    curve = pd.read_csv(Path(job.out_dir) / LOSS_CURVE)
    assert curve["step"].tolist() == list(range(1, 49))
    np.testing.assert_allclose(
        curve["loss"], pd.read_csv(Path(reference.out_dir) / LOSS_CURVE)["loss"], rtol=1e-5
    )
    first, second = metrics["attempts"]
    resumed_step = 48 - metrics["steps_this_run"]
    assert first["resumed_from_step"] is None and second["resumed_from_step"] == resumed_step
    assert first["pid"] == proc.pid and second["pid"] == os.getpid()
    logs = Path(job.out_dir) / "attempts"
    assert "from the start" in (logs / "attempt-1.log").read_text()
    assert (
        f"resuming from {job.checkpoint_dir}/checkpoint-{resumed_step}"
        in (logs / "attempt-2.log").read_text()
    )
    assert "in 2 attempt(s)" in (logs / "attempt-2.log").read_text()
    assert [a["attempt"] for a in whole["attempts"]] == [1]


def test_finished_run_writes_model_metrics_and_curves(demo_config, tmp_path, tiny_model, tiny_data):
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, epochs=1)
    metrics = train(job)
    out = Path(job.out_dir)
    on_disk = json.loads((out / METRICS_FILE).read_text())
    assert on_disk["optimizer_steps"] == 12 == metrics["optimizer_steps"]
    assert on_disk["tokens_this_run"] == 48 * SEQ - 5  # every non-pad token of the 48 blocks
    # the attention term's span: 47 full blocks and one of SEQ - 5 real tokens
    span = (47 * SEQ**2 + (SEQ - 5) ** 2) / (48 * SEQ - 5)
    assert on_disk["attention_span"] == pytest.approx(span) and on_disk["seq_len"] == SEQ
    assert on_disk["tokens_per_s"] > 0 and on_disk["mfu"] is None  # CPU: no peak, no MFU
    assert on_disk["eval_loss"] > 0 and on_disk["provenance"]["seed"] == demo_config["seed"]
    curve = (out / "loss_curve.csv").read_text().splitlines()
    assert curve[0].startswith("step,epoch,loss") and len(curve) == 13
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    assert AutoTokenizer.from_pretrained(out).chat_template
    assert not Path(job.checkpoint_dir).exists()  # keep_checkpoints is false by default


def test_a_multimodal_gemma3_checkpoint_trains_as_a_text_model(
    demo_config, tmp_path, packaged_tokenizer, tiny_data
):
    """Gemma-3 4B/12B/27B are Gemma3ForConditionalGeneration checkpoints, whose config keeps the
    language model's shape in its text config: a tiny random one (a 1-layer vision tower, a
    2-layer text model with a sliding window shorter than the blocks) trains on text blocks, and
    its FLOP count reads the text model's layers and width."""
    import json

    from transformers import AutoModelForCausalLM

    model_dir = tiny_sliding_model("gemma3", tmp_path / "tiny-gemma3-mm", packaged_tokenizer)
    job = make_job(demo_config, tmp_path, model_dir, tiny_data, epochs=1)
    metrics = train(job)
    on_disk = json.loads((Path(job.out_dir) / METRICS_FILE).read_text())
    assert on_disk["optimizer_steps"] == 12 == metrics["optimizer_steps"]
    assert np.isfinite(on_disk["eval_loss"])
    # 6 N + 12 d (s_full + s_sliding): the text model's full layer over the blocks' lengths
    # (32, the last 27) and its sliding layer over its 8-token window, queries 2 heads x 24
    # wide (48, not the hidden size of 32, as Gemma-3's 4 x 256 against 640)
    non_embedding = on_disk["parameters"] - on_disk["embedding_parameters"]
    assert on_disk["sliding_attention_span"] == 8 < on_disk["attention_span"]
    assert on_disk["attention_width"] == 2 * 24
    assert on_disk["flops_per_token"] == pytest.approx(
        6 * non_embedding + 12 * 48 * (on_disk["attention_span"] + 8)
    )
    trained = AutoModelForCausalLM.from_pretrained(job.out_dir)
    assert type(trained).__name__ == "Gemma3ForConditionalGeneration"
    # the count leaves the vision tower out: the text model and its (tied) head only
    text_model = trained.model.language_model
    assert on_disk["parameters"] == sum(p.numel() for p in text_model.parameters())
    assert on_disk["parameters"] < trained.num_parameters()


def test_paper_train_jobs_become_correct_sbatch_commands():
    jobs = planned_resources("train", "--configfile", "config/paper.yaml")
    assert len(jobs) == 2 * 2 * 4 * 2  # domains x models x trained methods x seeds
    for output, resources in jobs.items():
        command = sbatch_command(resources)
        assert "--gres=gpu:a100:8" in command and resources["tasks_per_gpu"] == "0"
        assert "--ntasks-per-gpu" not in command  # one task per node starts torchrun
        hours = 24 if "llama-2-13b-chat" in output else 12
        assert f" -t {hours * 60}" in command and "--mem 480000" in command
        assert "--cpus-per-task=32" in command
        # 13B fits one node of 8 x 80 GB (the paper's 8x A100): no job spans two
        assert "--nodes=1" in command and resources["mpi"] == ""


@requires_slurm  # the profile loads the SLURM executor, which asks the cluster for its config
def test_the_slurm_profile_warns_train_jobs_before_their_time_limit():
    """profiles/slurm: SIGTERM to the train job's steps 300 s before its limit (so that the
    trainer checkpoints), not to the batch shell (`B:`); no other rule gets it."""
    profile = ("--profile", str(REPO / "profiles" / "slurm"), "--configfile", "config/paper.yaml")
    jobs = planned_resources("train", *profile)
    assert jobs and all("--signal=TERM@300" in sbatch_command(r) for r in jobs.values())
    assert all(
        "slurm_extra" not in resources
        for resources in planned_resources("evaluate", *profile).values()
    )


def test_two_node_training_job_gets_the_multi_node_sbatch_options(tmp_path):
    """A 13B train job given 2 nodes x 8 GPUs, as the plugin would submit it."""
    two_nodes = tmp_path / "two_nodes.yaml"
    two_nodes.write_text("training:\n  resources:\n    llama-2-13b-chat: {nodes: 2}\n")
    jobs = planned_resources("train", "--configfile", "config/paper.yaml", str(two_nodes))
    resources = jobs["results/models/biomed/llama-2-13b-chat/cft/seed1234"]
    command = sbatch_command(resources)
    for option in (
        "--nodes=2",
        "--ntasks=2",
        "--gres=gpu:a100:8",
        "--cpus-per-task=32",
        "--mem 480000",
        "-t 1440",
    ):
        assert option in command
    assert resources["mpi"] == "srun"


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
    # The loss logged at step N measures the weights before update N: the last good log
    # vouches for the weights of step N - 1, not for checkpoint-N (after an lr of 1e6, max |w|
    # there is ~1e6). Every kept checkpoint holds weights that were measured good.
    from safetensors.torch import load_file

    for step in kept:
        state = load_file(Path(job.checkpoint_dir) / f"checkpoint-{step}" / "model.safetensors")
        assert max(t.abs().max().item() for t in state.values()) < 10, step


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
    from cft.core.io import OutputError

    job = make_job(demo_config, tmp_path, tiny_model, tiny_data)
    for folder in (Path(job.out_dir), Path(job.checkpoint_dir)):
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text("someone's notes\n")
        with pytest.raises(OutputError, match=f"{folder}: refusing to"):
            train(job)
        assert (folder / "notes.txt").read_text() == "someone's notes\n"
        (folder / "notes.txt").unlink()


def test_time_based_checkpoints_save_without_a_step_count(
    demo_config, tmp_path, tiny_model, tiny_data
):
    """`save_every_minutes`: checkpoints by time, not by `save_steps` (which is never reached
    here); each saved checkpoint is complete and marked."""
    job = make_job(
        demo_config, tmp_path, tiny_model, tiny_data,
        save_steps=1000, save_every_minutes=1e-6, checkpoint_max_overhead=1.0,
        keep_checkpoints=True,
    )  # fmt: skip
    train(job)
    saved = sorted(Path(job.checkpoint_dir).glob("checkpoint-*"))
    assert saved, "no checkpoint was saved by time"
    assert all((folder / COMPLETE_MARKER).is_file() for folder in saved)


def document_chunks(n: int, seed: int) -> dict[str, list]:
    """Document-mode rows: chunks of their own lengths (no padding stored), a masked prompt at
    the start of some."""
    rng = np.random.default_rng(seed)
    rows = {"input_ids": [], "labels": [], "attention_mask": [], "prompt_index": []}
    for _ in range(n):
        length = int(rng.integers(6, SEQ + 1))
        ids = rng.integers(0, 49152, size=length)
        labels = ids.copy()
        labels[: int(rng.integers(0, length // 2))] = -100
        rows["input_ids"].append(ids.tolist())
        rows["labels"].append(labels.tolist())
        rows["attention_mask"].append([1] * length)
        rows["prompt_index"].append(0)
    return rows


def test_padding_free_batches_give_the_per_token_losses_of_padded_ones(tiny_model):
    """Concatenated sequences with restarting position ids attend within each sequence only:
    every loss token's loss equals the padded batch's, and the loss tokens are the same."""
    from transformers import AutoModelForCausalLM

    from cft.training.data import collate_blocks, collate_flat

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    data = document_chunks(4, seed=3)
    rows = [{k: data[k][i] for k in data} for i in range(4)]

    def per_token(batch) -> torch.Tensor:
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        labels = batch["labels"][:, 1:]
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), labels.flatten(), reduction="none"
        )
        return losses[labels.flatten() != -100]

    padded, flat = per_token(collate_blocks(rows)), per_token(collate_flat(rows))
    assert len(padded) == len(flat) > 20
    torch.testing.assert_close(flat, padded, rtol=1e-5, atol=1e-5)
    # a prediction across a sequence boundary would differ: attention really stops there
    joined = collate_flat(rows)
    joined["position_ids"] = torch.arange(joined["input_ids"].shape[1])[None]
    assert collate_flat(rows)["use_cache"] is False  # else transformers ignores the packing
    assert not torch.allclose(per_token(joined), padded, atol=1e-3)


def test_a_padding_free_run_trains_as_the_padded_one(demo_config, tmp_path, tiny_model):
    from datasets import Dataset, DatasetDict, load_from_disk

    from cft.core.fingerprints import dataset_fingerprint
    from cft.core.io import write_json

    data = tmp_path / "chunks"
    DatasetDict({"train": Dataset.from_dict(document_chunks(24, seed=4))}).save_to_disk(data)
    write_json(data / "stats.json", {"fingerprint": dataset_fingerprint(load_from_disk(data))})
    records = {}
    for padding_free in (False, True):
        job = make_job(
            demo_config, tmp_path / str(padding_free), tiny_model, data,
            padding_free=padding_free, eval_at_end=False,
        )  # fmt: skip
        records[padding_free] = train(job)
    padded, flat = records[False], records[True]
    assert flat["tokens_this_run"] == padded["tokens_this_run"]
    assert flat["loss_tokens_this_run"] == padded["loss_tokens_this_run"]
    assert flat["attention_span"] == pytest.approx(padded["attention_span"])
    assert flat["train_loss_mean"] == pytest.approx(padded["train_loss_mean"], rel=1e-4)


def full_and_chunked(model, ids, labels, rows, num_items=None):
    """The loss and gradients of ``model`` (fp32) by transformers' full logits, then by the
    chunked loss on a copy of the same weights."""
    import copy

    from cft.training.loss import use_chunked_loss

    results = []
    for chunk in (None, rows):
        twin = copy.deepcopy(model)
        if chunk:
            use_chunked_loss(twin, chunk)
        output = twin(input_ids=ids, labels=labels, num_items_in_batch=num_items)
        assert (output.logits is None) == bool(chunk)  # no full logits on the chunked path
        loss = output.loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in twin.named_parameters()}))
    return results


@pytest.mark.parametrize("count", ["mean", "num_items"])
def test_chunked_loss_equals_the_full_loss_on_a_128k_vocabulary(count):
    """Llama-3's 128,256-entry vocabulary, prompts masked as CFT masks them, the loss tokens
    split into chunks of 7: the same loss and gradients as transformers' full logits to 1e-5,
    as the token mean and as a sum over the batch's item count (loss_normalization: tokens)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128_256, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, 128_256, (2, 24))
    labels = ids.clone()
    labels[0, :9] = labels[1, :4] = -100  # the prompts
    num_items = torch.tensor(60) if count == "num_items" else None
    (full, full_grads), (ours, our_grads) = full_and_chunked(model, ids, labels, 7, num_items)
    assert ours.item() == pytest.approx(full.item(), abs=1e-5)
    assert set(our_grads) == set(full_grads)
    for name, grad in full_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-5, atol=1e-5)
    assert full_grads["lm_head.weight"].abs().sum() > 0


def test_chunked_loss_soft_caps_as_gemma_and_refuses_rescaled_logits():
    """Gemma-2's final logit soft-capping is applied in each chunk as in the full logits; a
    model whose logits are scaled (Cohere's logit_scale) is refused when the chunked loss is
    asked for, naming the switch, and keeps its full logits under auto."""
    from transformers import CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM

    from cft.training.loss import for_job

    torch.manual_seed(0)
    small = {
        "vocab_size": 500, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
    }  # fmt: skip
    model = Gemma2ForCausalLM(Gemma2Config(**small, final_logit_softcapping=2.0))
    ids = torch.randint(0, 500, (2, 16))
    (full, full_grads), (ours, our_grads) = full_and_chunked(model, ids, ids, 5)
    assert ours.item() == pytest.approx(full.item(), abs=1e-5)
    for name, grad in full_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-5, atol=1e-5)
    cohere = CohereForCausalLM(CohereConfig(**small, logit_scale=0.5))
    with pytest.raises(TrainingError, match=r"logit_scale.*training\.chunked_loss: false"):
        for_job(cohere, True, 16)
    assert for_job(cohere, "auto", 1 << 30) is None  # auto keeps its full logits
    assert cohere(input_ids=ids, labels=ids).logits is not None


def test_chunked_loss_is_chosen_by_the_size_of_a_micro_batch_s_logits():
    """auto: Llama-3's and Gemma-3's vocabularies at the paper's 4 x 4,096 tokens are chunked,
    Llama-2's 32k there and the demo's are not; true and false are obeyed."""
    from cft.training.loss import chunk_rows, chunked

    paper = 4 * 4096
    assert chunked("auto", paper, 128_256) and chunked("auto", paper, 262_144)
    assert not chunked("auto", paper, 32_000) and not chunked("auto", 8 * 256, 49_152)
    assert chunked(True, 16, 500) and not chunked(False, paper, 262_144)
    assert chunk_rows(128_256) == 523 and chunk_rows(262_144) == 256


def test_a_job_with_the_chunked_loss_trains_as_the_full_one(
    demo_config, tmp_path, tiny_model, tiny_data
):
    """`training.chunked_loss: true` through the training stage: the same logged losses and
    evaluation loss as the full logits, and the record names the chunk."""
    records = {}
    for setting in (False, True):
        job = make_job(
            demo_config, tmp_path / str(setting), tiny_model, tiny_data, chunked_loss=setting
        )
        records[setting] = train(job)
    assert records[True]["loss_chunk_rows"] == 1365 and records[False]["loss_chunk_rows"] is None
    assert records[True]["final_loss"] == pytest.approx(records[False]["final_loss"], rel=1e-5)
    assert records[True]["eval_loss"] == pytest.approx(records[False]["eval_loss"], rel=1e-5)


def test_a_second_job_for_a_running_run_is_refused_and_the_first_unaffected(
    demo_config, tmp_path, tiny_model, tiny_data
):
    """A restarted controller that did not see the first job submits a second one for the
    same run: it stops at once naming the first (its host and pid), before touching the
    checkpoints; the first trains on and publishes its model; once it has ended, the lock
    is free again."""
    import json

    from cft.training.checkpoints import lock_path, run_lock

    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, epochs=4, save_steps=4)
    spec = tmp_path / "job.json"
    job.save(spec)
    first = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cft.training.recipe import Job; "
         "from cft.training.run import launch; launch(Job.load(sys.argv[1]))", str(spec)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    lock = lock_path(Path(job.checkpoint_dir))
    deadline = time.monotonic() + 120
    while not (lock.is_file() and f'"pid": {first.pid}' in lock.read_text()):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(TrainingError, match=rf"another job is training this run .*{first.pid}"):
        launch(job)
    assert first.wait(timeout=300) == 0
    record = json.loads((Path(job.out_dir) / METRICS_FILE).read_text())
    assert record["optimizer_steps"] == 48 and record["resumed_from"] is None
    assert not lock.exists()  # the first job removed its lock file as it ended
    with run_lock(Path(job.checkpoint_dir)):  # and the run can be locked again
        assert lock.is_file()
    assert not lock.exists()


def test_a_signal_checkpoints_at_the_next_step_and_the_rerun_resumes_there(
    demo_config, tmp_path, tiny_model, tiny_data
):
    """SIGTERM mid-training (preemption): the trainer saves a complete checkpoint at the next
    optimizer step's end and stops with an error, with no periodic checkpoint due
    (save_steps 1000); the rerun resumes from that checkpoint and completes the run."""
    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, epochs=4, save_steps=1000)
    spec = tmp_path / "job.json"
    job.save(spec)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cft.training", "--job", str(spec)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tensorboard = Path(job.checkpoint_dir) / "tensorboard"
    deadline = time.monotonic() + 240
    while not list(tensorboard.rglob("events.out.*")):  # written from the first step on
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode != 0, stderr[-2000:]
    saved = [p.parent for p in Path(job.checkpoint_dir).glob(f"checkpoint-*/{COMPLETE_MARKER}")]
    assert len(saved) == 1, stderr[-2000:]
    step = int(saved[0].name.removeprefix("checkpoint-"))
    assert 0 < step < 48
    assert f"stopped by SIGTERM after saving {saved[0]}" in stderr
    assert not Path(job.out_dir).exists()

    metrics = train(job)  # the retry
    assert metrics["optimizer_steps"] == 48 and metrics["steps_this_run"] == 48 - step
    assert [a["resumed_from_step"] for a in metrics["attempts"]] == [None, step]
    first_log = (Path(job.out_dir) / "attempts" / "attempt-1.log").read_text()
    assert f"SIGTERM: saving checkpoint-{step}, then stopping" in first_log


def test_with_no_signals_to_catch_a_sigterm_ends_the_job_at_once(
    demo_config, tmp_path, tiny_model, tiny_data
):
    job = make_job(demo_config, tmp_path, tiny_model, tiny_data, epochs=4, save_steps=1000,
                   checkpoint_on_signal=[])  # fmt: skip
    spec = tmp_path / "job.json"
    job.save(spec)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cft.training", "--job", str(spec)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tensorboard = Path(job.checkpoint_dir) / "tensorboard"
    deadline = time.monotonic() + 240
    while not list(tensorboard.rglob("events.out.*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert not list(Path(job.checkpoint_dir).glob("checkpoint-*"))
