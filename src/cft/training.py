"""Fine-tuning one (domain, model, method) on its packed blocks: transformers Trainer, FSDP on GPUs.

The recipe is the config's ``training`` section (by default the paper's: 1 epoch, global batch
128, lr 2e-5, AdamW (0.9, 0.95), weight decay 0.1, cosine with 5% warmup, clip 1.0, bf16,
FULL_SHARD, activation checkpointing). What this module adds around the Trainer:

- batch arithmetic: the global batch is fixed by config; micro-batch size and gradient
  accumulation follow from the job's devices (:func:`plan_batch`);
- loss normalisation: the Trainer's token-weighted loss (``num_items_in_batch``, counted over
  every micro-batch of the optimizer step and across devices), i.e. the mean over all
  loss-bearing tokens of the global batch;
- precision: fp32 master weights and optimizer state on every path; ``precision: bf16`` computes
  in bf16 (autocast without FSDP; FSDP2's MixedPrecisionPolicy with gradients reduced in fp32);
- FSDP2 with gradient accumulation reduce-scatters every micro-batch (``sync_each_batch``), so
  no rank ever holds full unsharded gradients between micro-batches;
- launch: one process, ``torchrun`` on one node, ``srun torchrun --rdzv-backend c10d`` on
  several (:func:`launch_command`); ``cpu_processes_per_node`` runs the same distributed path
  on CPU processes (gloo) so that FSDP2 can be exercised without GPUs (:func:`fsdp_on_cpu`);
- loading: the TrainingArguments (and so the process group) exist before the weights are read,
  so under FSDP only local rank 0 reads them and FSDP2 broadcasts them to the other ranks;
- checkpoints every ``save_steps``: sharded under FSDP (each rank writes its own shard), with a
  completion marker; resume from the last complete one; the final model is gathered once and
  saved in the model's configured dtype, in a folder that appears only when training has
  finished;
- metrics: tokens/s (all and loss-bearing), MFU (torchtitan's FLOPs convention), peak memory,
  wall time with checkpoint saving timed apart from the training loop, losses.

    python -m cft.training --config config/config.yaml --domain biomed \\
        --model smollm2-135m-instruct --method cft
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import logging
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cft import paths
from cft.config import REPO_ROOT, ConfigError, train_resources, training_seeds
from cft.devices import job_device, native_bf16
from cft.fingerprints import (
    LOSS_CURVE,
    METRICS_FILE,
    dataset_fingerprint,
    folder_fingerprint,
    verified_fingerprint,
)
from cft.io import OutputError, check_output, publish, read_json, write_json
from cft.logging_utils import setup_logging
from cft.paths import model_dir
from cft.provenance import config_hash, provenance

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s by device name, most specific first (NVIDIA data sheets: H100 SXM 989,
# PCIe 756, NVL 835; A100 312; H200 989). Unknown devices get no MFU, never a guess.
PEAK_FLOPS = (
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)
COMPLETE_MARKER = "cft_checkpoint_complete"
RUN_RECORD = "cft_run.json"
JOB_SPEC = "job.json"  # the job handed to torchrun workers, written beside the checkpoints


class TrainingError(RuntimeError):
    """Training cannot start as configured; the message names the culprit."""


# ---- planning: resources, batch arithmetic, launch command --------------------------------------


@dataclass(frozen=True)
class BatchPlan:
    world_size: int
    per_device_batch_size: int
    gradient_accumulation_steps: int

    @property
    def global_batch_size(self) -> int:
        return self.world_size * self.per_device_batch_size * self.gradient_accumulation_steps


def plan_batch(global_batch_size: int, world_size: int, max_per_device: int) -> BatchPlan:
    """Split a fixed global batch over ``world_size`` devices.

    The micro-batch is the largest divisor of the per-device share not above ``max_per_device``,
    so that micro-batch x accumulation x devices is exactly the configured global batch.
    """
    if global_batch_size % world_size:
        raise ConfigError(
            f"training.global_batch_size = {global_batch_size} is not divisible by the "
            f"{world_size} devices of the job (nodes x gpus_per_node); choose a multiple of "
            f"{world_size} or change training.resources"
        )
    share = global_batch_size // world_size
    micro = max(d for d in range(1, min(share, max_per_device) + 1) if share % d == 0)
    return BatchPlan(world_size, micro, share // micro)


def processes_per_node(resources: dict) -> int:
    """Training processes per node: one per GPU, or ``cpu_processes_per_node`` without GPUs."""
    return resources["gpus_per_node"] or resources["cpu_processes_per_node"]


def world_size_of(resources: dict) -> int:
    return resources["nodes"] * processes_per_node(resources)


def gres_of(resources: dict) -> str:
    """SLURM generic resources for one node's GPUs ('' without GPUs)."""
    if not resources["gpus_per_node"]:
        return ""
    model = f"{resources['gpu_model']}:" if resources["gpu_model"] else ""
    return f"gpu:{model}{resources['gpus_per_node']}"


def free_port(host: str = "") -> int:
    """A TCP port nobody listens on now: each job gets its own rendezvous port, so two jobs on
    one node never collide on a fixed one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch_command(resources: dict, *, host: str | None = None, port: int | None = None) -> list:
    """The command that starts the training processes (append ``-m cft.training --job ...``).

    One process: the current Python. One node with several: ``torchrun --standalone`` (which
    picks its own free port). Several nodes (a SLURM allocation with one task per node):
    ``srun torchrun`` with c10d rendezvous on the first node, where the job script runs. The
    step states its CPUs, GPUs and memory: since SLURM 22.05 srun does not inherit
    --cpus-per-task from the allocation, and without it every node's workers share one core.
    """
    nodes, procs = resources["nodes"], processes_per_node(resources)
    if nodes == 1 and procs <= 1:
        return [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}"]
    if nodes == 1:
        return [*torchrun, "--standalone"]
    gres = gres_of(resources)
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={resources['cpus_per_task']}",
        *([f"--gres={gres}"] if gres else []),
        f"--mem={resources['mem_mb']}M",
        "--kill-on-bad-exit=1",
        *torchrun,
        f"--nnodes={nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host or socket.gethostname()}:{port or free_port()}",
        f"--rdzv-id={os.environ.get('SLURM_JOB_ID', 'cft')}",
    ]


def attention_implementation(requested: str, *, cuda: bool) -> str:
    """``auto``: FlashAttention-2 when installed and on CUDA, else PyTorch SDPA (the schema
    allows only these and the three explicit choices)."""
    if requested != "auto":
        return requested
    import importlib.util

    return "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"


# ---- metrics ----------------------------------------------------------------------------------


def flops_per_token(
    n_params: int, n_embedding_params: int, n_layers: int, d_model: int, seq_len: int
) -> float:
    """Training FLOPs per token, torchtitan's convention: 6 per non-embedding parameter (the
    input embedding is a lookup, not a matmul) plus 12*L*d*T for attention scores and values."""
    return 6 * (n_params - n_embedding_params) + 12 * n_layers * d_model * seq_len


def lookup_only_parameters(model) -> int:
    """The input embedding's parameters when they are a lookup only (no FLOPs); 0 when the
    embedding is tied to the output head (SmolLM2), whose matmul uses them on every token."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == embedding.data_ptr()
    return 0 if tied else embedding.numel()


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU by its name; None for CPUs and unknown GPUs."""
    if not device_name:
        return None
    name = device_name.upper()
    return next((flops for key, flops in PEAK_FLOPS if key in name), None)


def throughput_metrics(
    *,
    tokens: int,
    loss_tokens: int,
    loop_seconds: float,
    world: int,
    flops_per_token: float,
    peak_flops_per_device: float | None,
) -> dict:
    """Tokens/s and MFU of the training loop (checkpoint saving excluded from its seconds)."""
    rate = tokens / loop_seconds if loop_seconds > 0 else None
    per_device = rate / world if rate else None
    return {
        "tokens_per_s": rate,
        "loss_tokens_per_s": loss_tokens / loop_seconds if loop_seconds > 0 else None,
        "tokens_per_s_per_device": per_device,
        "flops_per_token": flops_per_token,
        "peak_flops_per_device": peak_flops_per_device,
        "mfu": flops_per_token * per_device / peak_flops_per_device
        if (per_device and peak_flops_per_device)
        else None,
    }


def peak_memory_mb(cuda: bool) -> float:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loss_curve_rows(log_history: list[dict]) -> list[dict]:
    keys = ("step", "epoch", "loss", "grad_norm", "learning_rate")
    return [{k: entry.get(k) for k in keys} for entry in log_history if "loss" in entry]


# ---- checkpoints ------------------------------------------------------------------------------


def last_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder that was completely written (it carries the marker the
    save callback writes after the Trainer has saved everything); a folder cut short by a kill
    is ignored."""
    if not checkpoint_dir.is_dir():
        return None
    complete = [
        path
        for path in checkpoint_dir.glob("checkpoint-*")
        if (path / COMPLETE_MARKER).is_file() and path.name.split("-")[-1].isdigit()
    ]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def prepare_checkpoint_dir(checkpoint_dir: Path, run_key: str) -> None:
    """Keep checkpoints only if they belong to the same run (config, data and base model); a
    change of any of them starts afresh rather than resuming into a different run."""
    record = checkpoint_dir / RUN_RECORD
    foreign = checkpoint_dir.is_dir() and any(
        path.name != JOB_SPEC for path in checkpoint_dir.iterdir()
    )
    if foreign and not record.is_file():
        raise OutputError(
            f"{checkpoint_dir}: refusing to use a non-empty folder without {RUN_RECORD} as the "
            f"checkpoint folder (it would be deleted after training); give a new or empty folder"
        )
    if record.is_file() and read_json(record).get("run_key") != run_key:
        log.warning(
            "%s: checkpoints of a different run (config or data changed); removing them",
            checkpoint_dir,
        )
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json(record, {"run_key": run_key})


# ---- the job ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """The ``training`` section of a validated config, typed: one field per key of the
    schema's ``training`` (tests/test_training.py holds the two equal); the schema fills the
    defaults. ``as_dict()`` is what run keys and provenance hash."""

    epochs: float
    max_steps: int | None  # None: the whole of ``epochs``
    seeds: list[int] | None  # one training run per seed; None: the config's seed
    global_batch_size: int
    learning_rate: float
    weight_decay: float
    adam_betas: list[float]
    adam_epsilon: float
    lr_scheduler: str
    warmup_ratio: float
    max_grad_norm: float
    precision: str  # auto, bf16, fp16 or fp32 (auto: resolve_precision)
    master_weights: str
    loss_normalization: str
    grad_clipping: str
    weight_decay_params: str
    max_seq_len: int
    fsdp: str
    activation_checkpointing: bool
    attn_implementation: str
    save_steps: int
    keep_checkpoints: bool
    logging_steps: int
    divergence: dict
    eval_at_end: bool
    lora: dict
    resources: dict

    @classmethod
    def of(cls, config: dict) -> Recipe:
        section = config["training"]
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(section) - known), sorted(known - set(section))
        if unknown or missing:
            raise ConfigError(
                f"training: unknown keys {unknown}, missing keys {missing}; validate the config "
                f"against config/schema.yaml first (it fills in the defaults)"
            )
        return cls(**section)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Job:
    """Everything a training process needs; written as JSON for torchrun workers."""

    config: dict
    domain: str
    model: str
    method: str
    tokenized_dir: str
    base_model_dir: str
    out_dir: str
    checkpoint_dir: str
    resources: dict
    log_file: str | None = None
    seed: int | None = None  # the training run's seed (data order, dropout); None: config seed

    @property
    def label(self) -> str:
        """domain/model/method, as the job's messages name it."""
        return f"{self.domain}/{self.model}/{self.method}"

    @property
    def recipe(self) -> Recipe:
        return Recipe.of(self.config)

    @property
    def run_seed(self) -> int:
        return self.config["seed"] if self.seed is None else self.seed

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Job:
        return cls(**read_json(path))


@contextlib.contextmanager
def fsdp_on_cpu(enabled: bool):
    """The CPU seam for FSDP2: accelerate builds its FSDP state only when the process group's
    type is GPU-like (MULTI_GPU, ...); on CPU processes (gloo) it silently falls back to DDP.
    While the Accelerator is created, the shared PartialState reports MULTI_GPU, so that
    accelerate takes its FSDP branch (and records FSDP as the shared type); everything after
    that (fully_shard, the mixed-precision policy, gradient reduce-scatter, sharded
    checkpoints, the final gather) is accelerate's and torch's own code on the real CPU
    device. Nothing else is changed."""
    if not enabled:
        yield
        return
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    shared = PartialState._shared_state
    if shared.get("distributed_type") != DistributedType.MULTI_CPU:
        raise TrainingError(
            "FSDP on CPU needs a multi-process CPU job (training.resources "
            f"cpu_processes_per_node > 1); accelerate reports {shared.get('distributed_type')}"
        )
    shared["distributed_type"] = DistributedType.MULTI_GPU
    try:
        yield
    except BaseException:
        shared["distributed_type"] = DistributedType.MULTI_CPU
        raise
    # accelerate has now recorded FSDP as the shared type, as it does on GPUs; it must stay
    # so, since every later AcceleratorState() re-reads it.
    if shared["distributed_type"] != DistributedType.FSDP:
        raise TrainingError(f"accelerate did not enter FSDP on CPU ({shared['distributed_type']})")


def verify_data(tokenized, stats: dict, folder) -> None:
    """Train only on the blocks the tokenize stage wrote: their fingerprint must equal the one
    its stats.json records."""

    found = dataset_fingerprint(tokenized)
    if found != stats["fingerprint"]:
        raise TrainingError(
            f"{folder}: the tokenized data changed after they were written (fingerprint "
            f"{found[:12]}, stats.json records {stats['fingerprint'][:12]}); rerun the tokenize "
            f"stage"
        )


def divergence_reason(
    loss: float, grad_norm: float | None, first_loss: float | None, max_loss_ratio: float | None
) -> str | None:
    """Why a logged step shows a diverged run, or None: a non-finite loss or gradient norm, a
    gradient norm of exactly 0 (nothing left to learn from: the weights are saturated), or a
    loss above ``max_loss_ratio`` times the first logged loss (None: no ratio check)."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if grad_norm is not None and not math.isfinite(grad_norm):
        return f"the gradient norm is {grad_norm}"
    if grad_norm == 0.0:
        return "the gradient norm is 0"
    if first_loss is not None and max_loss_ratio is not None and loss > max_loss_ratio * first_loss:
        return (
            f"the loss {loss:.4g} is above training.divergence.max_loss_ratio = "
            f"{max_loss_ratio} times the first logged loss {first_loss:.4g}"
        )
    return None


@functools.cache
def _trainer_classes():
    """The Trainer subclass and callbacks (transformers is imported only when training, not
    when the workflow imports this module for resources)."""
    from transformers import Trainer, TrainerCallback

    class CountingTrainer(Trainer):
        """Counts the tokens it trains on (all and loss-bearing) for throughput metrics, times
        checkpoint saving apart from the loop, and sets up FSDP2's precision and CPU seam."""

        tokens_seen = 0
        loss_tokens_seen = 0
        checkpoint_seconds = 0.0
        # Set by make_trainer before the Accelerator exists.
        cpu_fsdp = False
        fsdp_compute_dtype = None
        recipe: dict | None = None

        def create_accelerator_and_postprocess(self):
            with fsdp_on_cpu(self.cpu_fsdp):
                super().create_accelerator_and_postprocess()

        def _build_accelerator_args(self, **kwargs):
            args = super()._build_accelerator_args(**kwargs)
            plugin = args.get("fsdp_plugin")
            if plugin is not None and self.fsdp_compute_dtype is not None:
                import torch
                from torch.distributed.fsdp import MixedPrecisionPolicy

                # Parameters gathered in the compute dtype, gradients reduce-scattered in fp32
                # (as torchtitan); the sharded master weights stay fp32.
                plugin.mixed_precision_policy = MixedPrecisionPolicy(
                    param_dtype=self.fsdp_compute_dtype,
                    reduce_dtype=torch.float32,
                    output_dtype=self.fsdp_compute_dtype,
                )
            return args

        def training_step(self, model, inputs, num_items_in_batch=None):
            recipe = self.recipe
            if recipe["loss_normalization"] == "micro_batch_mean":
                # The authors' loss: each micro-batch's mean over its own loss tokens, divided by
                # the accumulation steps (the Trainer divides when it gets no item count), and
                # averaged over ranks by the gradient reduction.
                num_items_in_batch = None
            loss = super().training_step(model, inputs, num_items_in_batch)
            if recipe["grad_clipping"] == "per_micro_batch" and recipe["max_grad_norm"] > 0:
                # The authors clip the accumulated gradient after every micro-batch's backward.
                self.accelerator.clip_grad_norm_(model.parameters(), recipe["max_grad_norm"])
            return loss

        def get_decay_parameter_names(self, model):
            if self.recipe["weight_decay_params"] == "all":
                return [name for name, _ in model.named_parameters()]
            return super().get_decay_parameter_names(model)

        def compute_loss(self, model, inputs, *args, **kwargs):
            if model.training:
                self.tokens_seen += int(inputs["attention_mask"].sum())
                self.loss_tokens_seen += int((inputs["labels"][:, 1:] != -100).sum())
            return super().compute_loss(model, inputs, *args, **kwargs)

        def _save_checkpoint(self, model, trial):
            start = time.perf_counter()
            super()._save_checkpoint(model, trial)
            self.checkpoint_seconds += time.perf_counter() - start

    class CheckpointMarker(TrainerCallback):
        """Marks a checkpoint complete once the Trainer has written all of it."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / COMPLETE_MARKER).write_text(f"{state.global_step}\n")

    class DivergenceGuard(TrainerCallback):
        """Stops training with a TrainingError when a logged loss or gradient norm shows the
        run has diverged (:func:`divergence_reason`), after removing any checkpoint saved
        since the last good log, so a rerun with a fixed config resumes from a good state."""

        def __init__(self, max_loss_ratio: float | None, checkpoint_dir: Path):
            self.max_loss_ratio, self.checkpoint_dir = max_loss_ratio, Path(checkpoint_dir)
            self.first_loss = None
            self.last_good_step = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            reason = divergence_reason(
                logs["loss"], logs.get("grad_norm"), self.first_loss, self.max_loss_ratio
            )
            if reason is None:
                if self.first_loss is None:
                    self.first_loss = logs["loss"]
                self.last_good_step = state.global_step
                return
            if state.is_world_process_zero:
                for folder in self.checkpoint_dir.glob("checkpoint-*"):
                    step = folder.name.split("-")[-1]
                    if step.isdigit() and int(step) > self.last_good_step:
                        shutil.rmtree(folder)
            raise TrainingError(
                f"training diverged at step {state.global_step}: {reason}; stopped (no model "
                f"saved). Checkpoints up to step {self.last_good_step} are kept in "
                f"{self.checkpoint_dir} for inspection. Lower training.learning_rate, or "
                f"raise training.divergence.max_loss_ratio if the loss spike is expected"
            )

    class LogToFile(TrainerCallback):
        """Trainer logs (loss, grad norm, lr) into the job's log, not only the console."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                log.info("step %d/%d: %s", state.global_step, state.max_steps, logs)

    class Throughput(TrainerCallback):
        """Wall time of the training loop in this process (a resumed run counts its own)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first_step = time.perf_counter(), state.global_step

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.start
            self.steps = state.global_step - self.first_step

    class PrecisionProbe(TrainerCallback):
        """Records the dtypes training really used, read off the live objects after the first
        optimizer step: the (local shards of the) parameters, the AdamW state, and the output
        of the first linear layer in the forward pass."""

        def __init__(self):
            self.record = {}
            self._hook = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            import torch

            linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))

            def hook(module, inputs, output):
                self.record.setdefault("compute", str(output.dtype).removeprefix("torch."))

            self._hook = linear.register_forward_hook(hook)

        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            if "master_weights" in self.record:
                return
            param = next(p for p in model.parameters() if p.requires_grad)
            local = getattr(param, "_local_tensor", param)  # a DTensor shard under FSDP2
            self.record["master_weights"] = str(local.dtype).removeprefix("torch.")
            states = [s for s in optimizer.state.values() if "exp_avg" in s]
            if states:
                moment = states[0]["exp_avg"]
                moment = getattr(moment, "_local_tensor", moment)
                self.record["optimizer_state"] = str(moment.dtype).removeprefix("torch.")
            self.record["sharded_parameters"] = hasattr(param, "_local_tensor")
            if self._hook is not None:
                self._hook.remove()

    return SimpleNamespace(
        CountingTrainer=CountingTrainer,
        CheckpointMarker=CheckpointMarker,
        DivergenceGuard=DivergenceGuard,
        LogToFile=LogToFile,
        Throughput=Throughput,
        PrecisionProbe=PrecisionProbe,
    )


PAD_VALUES = {"labels": -100, "attention_mask": 0}


def collate_blocks(rows: list[dict], pad_id: int = 0) -> dict:
    """Stack sequences into int64 tensors (the loss needs int64 labels), right-padded to the
    longest sequence of the micro-batch: packed blocks all have ``max_seq_len`` tokens and get
    no padding; document chunks pad only to the micro-batch's longest, not to ``max_seq_len``
    (sort-free and deterministic: the batch is what the sampler drew). Padding is ``pad_id``
    (the EOS id, as the authors' code), hidden by the attention mask and never a label."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    batch = {}
    for key in ("input_ids", "labels", "attention_mask"):
        out = np.full((len(rows), width), PAD_VALUES.get(key, pad_id), dtype=np.int64)
        for i, row in enumerate(rows):
            values = np.asarray(row[key])
            out[i, : len(values)] = values
        batch[key] = torch.from_numpy(out)
    return batch


@dataclass(frozen=True)
class Parallelism:
    """How the job's processes share the work: one process, DDP, or FSDP2."""

    world_size: int
    fsdp: bool
    cuda: bool

    @property
    def cpu_fsdp(self) -> bool:
        return self.fsdp and not self.cuda


def parallelism_of(recipe: Recipe, world: int, *, cuda: bool) -> Parallelism:
    return Parallelism(world, fsdp=world > 1 and recipe.fsdp != "no_shard", cuda=cuda)


def training_arguments(job: Job, plan: BatchPlan, parallel: Parallelism):
    from transformers import TrainingArguments

    train, _ = resolve_precision(job.recipe, cuda=parallel.cuda)
    precision = train.precision
    fsdp_config = None
    if parallel.fsdp:
        fsdp_config = {
            "version": 2,
            # FULL_SHARD reshards parameters after forward; SHARD_GRAD_OP keeps them gathered.
            "reshard_after_forward": train.fsdp == "full_shard",
            "activation_checkpointing": train.activation_checkpointing,
            # Only local rank 0 reads the weights; FSDP2 broadcasts them when it shards.
            "cpu_ram_efficient_loading": True,
            # Checkpoints for resume: each rank writes its own shard (torch.distributed.checkpoint).
            "state_dict_type": "SHARDED_STATE_DICT",
        }
    return TrainingArguments(
        output_dir=job.checkpoint_dir,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        per_device_train_batch_size=plan.per_device_batch_size,
        per_device_eval_batch_size=plan.per_device_batch_size,
        prediction_loss_only=True,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        adam_beta1=train.adam_betas[0],
        adam_beta2=train.adam_betas[1],
        adam_epsilon=train.adam_epsilon,
        # The fused kernel computes the same AdamW update in one pass: one launch per step on
        # CUDA, and on CPU about 5x faster than the per-parameter loop (bench/cpu_training.py).
        # Sharded CPU parameters (FSDP2 over gloo) keep the loop.
        optim="adamw_torch_fused" if parallel.cuda or not parallel.fsdp else "adamw_torch",
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=train.max_grad_norm,
        # Autocast over fp32 master weights (under FSDP the MixedPrecisionPolicy casts too);
        # pure low-precision weights need no autocast.
        bf16=precision == "bf16" and master_dtype(train) == "float32",
        fp16=precision == "fp16" and master_dtype(train) == "float32",
        use_cpu=not parallel.cuda,
        ddp_backend="gloo" if parallel.world_size > 1 and not parallel.cuda else None,
        fsdp=parallel.fsdp,
        fsdp_config=fsdp_config,
        # FSDP: reduce-scatter every micro-batch instead of no_sync, which would keep full
        # unsharded gradients on every rank until the last micro-batch.
        accelerator_config={"gradient_accumulation_kwargs": {"sync_each_batch": parallel.fsdp}},
        # Without FSDP, checkpointing goes through the model (FSDP does it per wrapped layer).
        activation_checkpointing=train.activation_checkpointing and not parallel.fsdp,
        average_tokens_across_devices=True,
        # trainer_state.json of each checkpoint records the tokens trained on so far.
        include_num_input_tokens_seen="non_padding",
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=2,
        save_only_model=False,
        report_to=["tensorboard"],
        seed=job.run_seed,
        data_seed=job.run_seed,
        dataloader_drop_last=False,
        remove_unused_columns=False,
        disable_tqdm=False,
    )


COMPUTE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": None}


def resolve_precision(recipe: Recipe, *, cuda: bool) -> tuple[Recipe, str | None]:
    """The recipe with ``precision: auto`` replaced by what this machine runs fast (bf16
    autocast over fp32 master weights, or fp32), and the reason; unchanged otherwise."""
    if recipe.precision != "auto":
        return recipe, None
    native, reason = native_bf16(cuda=cuda)
    return replace(recipe, precision="bf16" if native else "fp32"), reason


RECIPE_SWITCHES = ("loss_normalization", "grad_clipping", "weight_decay_params", "max_grad_norm")


def master_dtype(recipe: Recipe) -> str:
    """The dtype of the parameters and optimizer state: fp32 (mixed precision), or the
    compute dtype itself (``master_weights: bf16``, the authors' pure bf16)."""
    if recipe.master_weights == "fp32" or recipe.precision == "fp32":
        return "float32"
    return COMPUTE_DTYPES[recipe.precision]


def make_trainer(
    job: Job,
    model,
    train_set,
    plan: BatchPlan,
    parallel: Parallelism,
    *,
    args=None,
    callbacks=(),
    pad_id: int = 0,
):
    """The project's Trainer: token counting, checkpoint markers, the recipe's switches, and
    sequences padded per micro-batch."""
    import torch

    classes = _trainer_classes()
    recipe, _ = resolve_precision(job.recipe, cuda=parallel.cuda)
    compute = COMPUTE_DTYPES[recipe.precision]
    mixed = compute is not None and master_dtype(recipe) == "float32"
    trainer_class = type(
        "JobTrainer",
        (classes.CountingTrainer,),
        {
            "cpu_fsdp": parallel.cpu_fsdp,
            "fsdp_compute_dtype": getattr(torch, compute) if mixed else None,
            "recipe": {key: getattr(recipe, key) for key in RECIPE_SWITCHES},
        },
    )
    return trainer_class(
        model=model,
        args=args or training_arguments(job, plan, parallel),
        train_dataset=train_set,
        data_collator=functools.partial(collate_blocks, pad_id=pad_id),
        callbacks=[
            classes.CheckpointMarker(),
            classes.LogToFile(),
            classes.DivergenceGuard(recipe.divergence["max_loss_ratio"], Path(job.checkpoint_dir)),
            *callbacks,
        ],
    )


def load_model(job: Job, args, parallel: Parallelism, attn: str):
    """The base model with its master weights (fp32, or the authors' pure bf16), and whether
    this process read the weights.

    Under FSDP only local rank 0 reads them (one copy per node in host memory): the other
    ranks build the model without reading anything, on uninitialised storage (``to_empty``:
    pages that are never written are never committed), and accelerate's RAM-efficient FSDP2
    preparation broadcasts rank 0's weights into the shards. The TrainingArguments exist
    first: they start the process group."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    if parallel.fsdp and int(os.environ.get("LOCAL_RANK", "0")) != 0:
        _ = args.device  # initialises torch.distributed
        config = AutoConfig.from_pretrained(job.base_model_dir)
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(
                config,
                dtype=getattr(torch, master_dtype(job.recipe)),
                attn_implementation=attn,
            )
        # Real buffers (rotary frequencies) survive; FSDP2 does not broadcast them.
        buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
        model.to_empty(device="cpu")
        for name, buffer in buffers.items():
            module, _, attribute = name.rpartition(".")
            model.get_submodule(module).get_buffer(attribute).copy_(buffer)
        model.tie_weights()  # as from_pretrained does; FSDP2 maps the tied pair as one
        read_weights = False
    else:
        model = AutoModelForCausalLM.from_pretrained(
            job.base_model_dir,
            dtype=getattr(torch, master_dtype(job.recipe)),
            attn_implementation=attn,
        )
        read_weights = True
    model.config.use_cache = False
    return model, read_weights


def gradient_reduction_dtype(trainer, parameter_dtype: str | None) -> str | None:
    """The dtype gradients are reduced in across ranks (None in one process): the FSDP2
    policy's reduce dtype, or else (DDP, FSDP2 without a policy) the parameters' own dtype."""
    if trainer.accelerator.num_processes == 1:
        return None
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    policy = getattr(plugin, "mixed_precision_policy", None) if plugin else None
    reduce = getattr(policy, "reduce_dtype", None)
    return str(reduce).removeprefix("torch.") if reduce is not None else parameter_dtype


def save_final_model(trainer, staging: Path, dtype_name: str) -> None:
    """Gather the full weights once (every rank takes part under FSDP) and save them on the
    main process in the model's configured dtype, through a plain (unsharded) copy of the
    model built on the meta device, so that transformers handles tied weights as usual."""
    import torch
    from transformers import AutoModelForCausalLM

    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not trainer.is_world_process_zero():
        return
    dtype = getattr(torch, dtype_name)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(trained.config, dtype=dtype)
    plain.load_state_dict(
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
        assign=True,
        strict=False,
    )
    plain.tie_weights()
    missing = [name for name, param in plain.named_parameters() if param.is_meta]
    if missing:
        raise TrainingError(f"the gathered state dict lacks {missing[:5]} (of {len(missing)})")
    plain.generation_config = trained.generation_config
    plain.config.use_cache = True
    plain.save_pretrained(str(staging))


def check_world(job: Job, world: int) -> None:
    """The started processes must be the ones the model's resources describe, and LoRA runs in
    one process."""
    key = job.label
    expected_world = world_size_of(job.resources)
    if world != expected_world:
        raise TrainingError(
            f"train job {key}: {world} processes were started but training.resources for "
            f"{job.model!r} describe {expected_world}"
        )
    if job.recipe.lora["enabled"] and world > 1:
        raise TrainingError(
            f"train job {key}: training.lora runs in one process; set the model's "
            f"training.resources to one device or disable LoRA"
        )


def load_tokenized(job: Job, *, verify: bool = True):
    """The tokenized dataset and its stats record; ``verify``: the blocks checked against the
    record (one read of the data: a few seconds per GB, docs/guarantees.md)."""
    from datasets import load_from_disk

    try:
        tokenized = load_from_disk(job.tokenized_dir)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise TrainingError(
            f"{job.tokenized_dir}: not a readable tokenized dataset ({err}); was it truncated? "
            f"rerun the tokenize stage"
        ) from None
    data_stats = read_json(Path(job.tokenized_dir) / "stats.json")
    if verify:
        verify_data(tokenized, data_stats, job.tokenized_dir)
    return tokenized, data_stats


def run_key(
    recipe: dict,
    seed: int,
    data_fingerprint: str,
    base_model_fingerprint: str,
    global_batch_size: int,
    world: int,
) -> str:
    """What a checkpoint folder must have been made by to be resumed: the training settings,
    the seed, the data, the base model and the batch layout."""
    return config_hash(
        [recipe, seed, data_fingerprint, base_model_fingerprint, global_batch_size, world]
    )


def write_run_files(
    staging: Path, tokenizer, log_history: list[dict], tensorboard_dir: Path
) -> tuple[str, list[dict]]:
    """Beside the saved weights: the tokenizer (and its chat template), the loss curve and
    the TensorBoard events. Returns the model's fingerprint (its files before the records)
    and the loss-curve rows."""
    tokenizer.save_pretrained(str(staging))
    model_fingerprint = folder_fingerprint(staging)
    rows = loss_curve_rows(log_history)
    with (staging / LOSS_CURVE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["step", "loss"])
        writer.writeheader()
        writer.writerows(rows)
    if tensorboard_dir.is_dir():
        shutil.copytree(tensorboard_dir, staging / "tensorboard")
    return model_fingerprint, rows


@dataclass(frozen=True)
class RunFacts:
    """What one training run measured and used: the inputs of its metrics record."""

    job: Job
    recipe: Recipe  # precision resolved
    precision: dict  # requested, chosen, why, the probe's dtypes, reduction and sync
    device_name: str | None  # the GPU's name; None on CPU
    world: int
    fsdp: bool
    plan: BatchPlan
    attn_implementation: str
    parameters: int
    embedding_parameters: int
    num_hidden_layers: int
    hidden_size: int
    weight_readers: list[int]  # per rank: 1 if it read the weights from disk
    resumed_from: str | None
    optimizer_steps: int
    steps_this_run: int
    tokens: int
    loss_tokens: int
    loop_seconds: float  # the training loop, checkpoint saving excluded
    checkpoint_seconds: float
    final_save_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    train_loss_mean: float
    loss_rows: list[dict]
    eval_loss: float | None
    model_fingerprint: str
    data_stats: dict


def metrics_record(facts: RunFacts) -> dict:
    """The run's metrics.json: identity, parallelism and precision, batch layout, speed and
    MFU, losses and provenance. Pure: everything comes from ``facts``."""
    job, recipe, world = facts.job, facts.recipe, facts.world
    seq_len = recipe.max_seq_len  # the attention span of a full block or chunk
    speed = throughput_metrics(
        tokens=facts.tokens,
        loss_tokens=facts.loss_tokens,
        loop_seconds=facts.loop_seconds,
        world=world,
        flops_per_token=flops_per_token(
            facts.parameters,
            facts.embedding_parameters,
            facts.num_hidden_layers,
            facts.hidden_size,
            seq_len,
        ),
        peak_flops_per_device=peak_flops(facts.device_name),
    )
    cuda = facts.device_name is not None
    return {
        "domain": job.domain,
        "model": job.model,
        "method": job.method,
        "seed": job.run_seed,
        "device": facts.device_name or f"cpu ({os.cpu_count()} cores)",
        "world_size": world,
        "parallelism": "fsdp2" if facts.fsdp else ("ddp" if world > 1 else "single"),
        "precision": facts.precision,
        "ranks_that_read_weights": [r for r, did in enumerate(facts.weight_readers) if did],
        "batch": asdict(facts.plan) | {"global_batch_size": facts.plan.global_batch_size},
        "optimizer_steps": facts.optimizer_steps,
        "steps_this_run": facts.steps_this_run,
        "resumed_from": facts.resumed_from,
        "epochs": recipe.epochs,
        "seq_len": seq_len,
        "parameters": facts.parameters,
        "embedding_parameters": facts.embedding_parameters,
        "attn_implementation": facts.attn_implementation,
        "train_seconds_this_run": facts.loop_seconds,
        "checkpoint_seconds_this_run": facts.checkpoint_seconds,
        "final_save_seconds": facts.final_save_seconds,
        "wall_seconds": facts.wall_seconds,
        "tokens_this_run": facts.tokens,
        "loss_tokens_this_run": facts.loss_tokens,
        **speed,
        "peak_memory_mb": facts.peak_memory_mb,
        "train_loss_mean": facts.train_loss_mean,
        "final_loss": facts.loss_rows[-1]["loss"] if facts.loss_rows else None,
        "eval_loss": facts.eval_loss,
        "model_fingerprint": facts.model_fingerprint,
        "data": {"tokenized": job.tokenized_dir, "fingerprint": facts.data_stats["fingerprint"]},
        "provenance": provenance(
            {"training": recipe.as_dict(), "data": facts.data_stats["fingerprint"]},
            seed=job.run_seed,
            backend="cuda" if cuda else "cpu",
        ),
    }


def train(job: Job, callbacks=()) -> dict | None:
    """Train in this process (one rank of a torchrun job, or the only process). Returns the
    metrics record on the main process. ``callbacks``: extra TrainerCallbacks (the knowledge
    curves evaluate each checkpoint as it is saved)."""
    import torch
    from transformers import AutoTokenizer

    wall_start = time.perf_counter()
    requested_precision = job.recipe.precision
    key = job.label
    cuda = (
        job_device(
            job.resources["gpus_per_node"],
            f"train job {key}",
            f"training.resources ({job.model}).gpus_per_node",
        )
        == "cuda"
    )
    recipe, precision_reason = resolve_precision(job.recipe, cuda=cuda)
    job = replace(job, config={**job.config, "training": recipe.as_dict()})
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    check_world(job, world)
    plan = plan_batch(recipe.global_batch_size, world, job.resources["per_device_batch_size"])
    parallel = parallelism_of(recipe, world, cuda=cuda)
    checkpoint_dir = Path(job.checkpoint_dir)
    out_dir = check_output(job.out_dir, directory=True)  # before the work, not after
    # The inputs are checked once per job, by rank 0: it alone reads the base model's weights,
    # and the other ranks wait for it at the barrier below (torchrun stops them if it fails).
    tokenized, data_stats = load_tokenized(job, verify=rank == 0)
    if rank == 0:
        key_of_run = run_key(
            recipe.as_dict(),
            job.run_seed,
            data_stats["fingerprint"],
            verified_fingerprint(Path(job.base_model_dir)),
            plan.global_batch_size,
            world,
        )
        prepare_checkpoint_dir(checkpoint_dir, key_of_run)
    # transformers' TensorBoard callback takes its folder from the environment only.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(checkpoint_dir / "tensorboard")

    attn = attention_implementation(recipe.attn_implementation, cuda=cuda)
    args = training_arguments(job, plan, parallel)
    model, read_weights = load_model(job, args, parallel, attn)
    n_params = sum(p.numel() for p in model.parameters())
    n_embedding = lookup_only_parameters(model)
    model_cfg = model.config
    if recipe.lora["enabled"]:
        model = _with_lora(model, recipe.lora)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model_dir)

    train_set = tokenized["train"]
    throughput, probe = _trainer_classes().Throughput(), _trainer_classes().PrecisionProbe()
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    trainer = make_trainer(
        job,
        model,
        train_set,
        plan,
        parallel,
        args=args,
        callbacks=[throughput, probe, *callbacks],
        pad_id=pad_id,
    )
    if world > 1:  # rank 0 may have just removed a different run's checkpoints
        torch.distributed.barrier()
    resume = last_complete_checkpoint(checkpoint_dir)
    log.info(
        "%s: %d blocks of %d tokens; %d process(es) x micro-batch %d x %d accumulation = "
        "global batch %d; %s; attention %s; %s",
        key,
        len(train_set),
        len(train_set[0]["input_ids"]),
        world,
        plan.per_device_batch_size,
        plan.gradient_accumulation_steps,
        plan.global_batch_size,
        "FSDP2" if parallel.fsdp else ("DDP" if world > 1 else "one process"),
        attn,
        f"resuming from {resume}" if resume else "from the start",
    )
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    eval_loss = None
    if recipe.eval_at_end and "validation" in tokenized:
        eval_loss = trainer.evaluate(eval_dataset=tokenized["validation"])["eval_loss"]

    tokens = trainer.accelerator.reduce(
        torch.tensor([trainer.tokens_seen, trainer.loss_tokens_seen], device=trainer.args.device),
        "sum",
    ).tolist()
    readers = trainer.accelerator.gather(
        torch.tensor([int(read_weights)], device=trainer.args.device)
    ).tolist()
    staging = out_dir.parent / f".{out_dir.name}.partial"
    if rank == 0 and staging.exists():
        shutil.rmtree(staging)
    if recipe.lora["enabled"]:
        trainer.model = trainer.model_wrapped = trainer.model.merge_and_unload()
    saved_dtype = job.config["models"][job.model].get("dtype", "float32")
    save_start = time.perf_counter()
    save_final_model(trainer, staging, saved_dtype)
    final_save_seconds = time.perf_counter() - save_start
    if not trainer.is_world_process_zero():
        return None

    model_fingerprint, rows = write_run_files(
        staging, tokenizer, trainer.state.log_history, checkpoint_dir / "tensorboard"
    )
    sync_each_batch = trainer.accelerator.gradient_state.plugin_kwargs.get("sync_each_batch")
    metrics = metrics_record(
        RunFacts(
            job=job,
            recipe=recipe,
            precision={
                "requested": requested_precision,
                "chosen": recipe.precision,
                "why": precision_reason or "set in config",
                **probe.record,
                "gradient_reduction": gradient_reduction_dtype(
                    trainer, probe.record.get("master_weights")
                ),
                "gradient_sync": "every micro-batch" if sync_each_batch else "last micro-batch",
                "saved_dtype": saved_dtype,
            },
            device_name=torch.cuda.get_device_name() if cuda else None,
            world=world,
            fsdp=parallel.fsdp,
            plan=plan,
            attn_implementation=attn,
            parameters=n_params,
            embedding_parameters=n_embedding,
            num_hidden_layers=model_cfg.num_hidden_layers,
            hidden_size=model_cfg.hidden_size,
            weight_readers=readers,
            resumed_from=str(resume) if resume else None,
            optimizer_steps=trainer.state.global_step,
            steps_this_run=throughput.steps,
            tokens=tokens[0],
            loss_tokens=tokens[1],
            loop_seconds=throughput.seconds - trainer.checkpoint_seconds,
            checkpoint_seconds=trainer.checkpoint_seconds,
            final_save_seconds=final_save_seconds,
            wall_seconds=time.perf_counter() - wall_start,
            peak_memory_mb=peak_memory_mb(cuda),
            train_loss_mean=result.training_loss,
            loss_rows=rows,
            eval_loss=eval_loss,
            model_fingerprint=model_fingerprint,
            data_stats=data_stats,
        )
    )
    write_json(staging / METRICS_FILE, metrics)
    publish(staging, out_dir)
    if not recipe.keep_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info(
        "%s: %d steps, final loss %s, %.0f tokens/s, MFU %s",
        key,
        trainer.state.global_step,
        metrics["final_loss"],
        metrics["tokens_per_s"] or 0,
        f"{metrics['mfu']:.1%}" if metrics["mfu"] else "n/a",
    )
    return metrics


def _with_lora(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(
        model,
        LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
            task_type="CAUSAL_LM",
        ),
    )


def launch(job: Job) -> dict | None:
    """Run a training job: in this process for one device, else through torchrun (and srun
    across nodes), with the job spec handed over as JSON next to the checkpoints."""
    resources = job.resources
    plan_batch(
        job.recipe.global_batch_size,
        world_size_of(resources),
        resources["per_device_batch_size"],
    )  # fail before starting any process
    command = launch_command(resources)
    if command == [sys.executable]:
        return train(job)
    spec = Path(job.checkpoint_dir) / JOB_SPEC
    spec.parent.mkdir(parents=True, exist_ok=True)
    job.save(spec)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    full = [*command, "-m", "cft.training", "--job", str(spec)]
    log.info("launching: %s", " ".join(full))
    if job.log_file:  # the workers' output goes to the rule's log too
        with open(job.log_file, "a") as sink:
            subprocess.run(full, check=True, env=env, stdout=sink, stderr=subprocess.STDOUT)
    else:
        subprocess.run(full, check=True, env=env)
    return read_json(Path(job.out_dir) / METRICS_FILE)


def main(argv: list[str] | None = None) -> None:
    from cft.cli import stage_config, stage_parser

    parser = stage_parser(__doc__, domain_required=False)
    parser.add_argument("--job", help=argparse.SUPPRESS)  # a torchrun worker's job spec
    parser.add_argument("--model")
    parser.add_argument("--method")
    parser.add_argument(
        "--tokenized", help=f"default: {paths.tokenized_dir('{domain}', '{model}', '{method}')}"
    )
    parser.add_argument("--base-model", help=f"default: {paths.base_model_dir('{model}')}")
    parser.add_argument("--seed", type=int, help="training run (default: the first seed)")
    parser.add_argument("--out-dir", help="default: the workflow's model folder of the run")
    args = parser.parse_args(argv)
    setup_logging()
    if args.job:
        train(Job.load(Path(args.job)))
        return
    if not (args.domain and args.model and args.method):
        parser.error("--domain, --model and --method are required")
    config = stage_config(args)
    seed = training_seeds(config)[0] if args.seed is None else args.seed
    out_dir = model_dir(args.domain, args.model, args.method, seed)
    launch(
        Job(
            config=config,
            domain=args.domain,
            model=args.model,
            method=args.method,
            tokenized_dir=args.tokenized
            or paths.tokenized_dir(args.domain, args.model, args.method),
            base_model_dir=args.base_model or paths.base_model_dir(args.model),
            out_dir=args.out_dir or out_dir,
            checkpoint_dir=paths.checkpoint_dir(args.domain, args.model, args.method, seed),
            resources=train_resources(config, args.model),
            seed=seed,
        )
    )


if __name__ == "__main__":
    main()
