"""The project's Trainer: transformers' Trainer with the recipe's switches, token counting and
checkpoint timing, the callbacks that guard a run (divergence) and log it, its arguments, and
the CPU seam that lets FSDP2 run on gloo processes. Checkpoint callbacks are
:mod:`~cft.training.checkpoints`', measurement :mod:`~cft.training.metrics`', collators
:mod:`~cft.training.data`'."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainingArguments

from cft.core.attention import sliding_window
from cft.training import TrainingError
from cft.training.checkpoints import CheckpointMarker, TimedCheckpoints, remove_checkpoints_after
from cft.training.data import collate_blocks, collate_flat, sequence_lengths
from cft.training.launch import BatchPlan, Parallelism
from cft.training.recipe import Job, Recipe

log = logging.getLogger(__name__)


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


class CftTrainer(Trainer):
    """Counts the tokens it trains on (all and loss-bearing) for throughput metrics, times
    checkpoint saving apart from the loop, applies the recipe's loss, clipping and weight-decay
    switches, and sets up FSDP2's precision and CPU seam."""

    def __init__(self, *args, recipe: Recipe, parallel: Parallelism, **kwargs):
        # Read while the Accelerator is built, inside Trainer.__init__.
        self.recipe, self.cpu_fsdp = recipe, parallel.cpu_fsdp
        self.tokens_seen = self.loss_tokens_seen = 0
        # sum over sequences of (its real length)^2: attention FLOPs grow with each sequence's
        # own span, not with max_seq_len (document chunks are often much shorter); a sliding
        # layer's with min(length, window) (Gemma-3, Mistral v0.1)
        self.attention_pairs = self.sliding_pairs = 0
        self.window = sliding_window(kwargs["model"].config)
        self.checkpoint_seconds = 0.0
        super().__init__(*args, **kwargs)

    def create_accelerator_and_postprocess(self):
        with fsdp_on_cpu(self.cpu_fsdp):
            super().create_accelerator_and_postprocess()

    def _build_accelerator_args(self, **kwargs):
        args = super()._build_accelerator_args(**kwargs)
        plugin = args.get("fsdp_plugin")
        if plugin is not None and self.recipe.mixed_precision:
            import torch
            from torch.distributed.fsdp import MixedPrecisionPolicy

            # Parameters gathered in the compute dtype, gradients reduce-scattered in fp32
            # (as torchtitan); the sharded master weights stay fp32.
            compute = getattr(torch, self.recipe.compute_dtype)
            plugin.mixed_precision_policy = MixedPrecisionPolicy(
                param_dtype=compute, reduce_dtype=torch.float32, output_dtype=compute
            )
        return args

    def training_step(self, model, inputs, num_items_in_batch=None):
        recipe = self.recipe
        if recipe.loss_normalization == "micro_batch_mean":
            # The authors' loss: each micro-batch's mean over its own loss tokens, divided by
            # the accumulation steps (the Trainer divides when it gets no item count), and
            # averaged over ranks by the gradient reduction.
            num_items_in_batch = None
        loss = super().training_step(model, inputs, num_items_in_batch)
        if recipe.grad_clipping == "per_micro_batch" and recipe.max_grad_norm > 0:
            # The authors clip the accumulated gradient after every micro-batch's backward.
            self.accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
        return loss

    def get_decay_parameter_names(self, model):
        if self.recipe.weight_decay_params == "all":
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            lengths = sequence_lengths(inputs)
            self.tokens_seen += int(lengths.sum())
            self.attention_pairs += int((lengths**2).sum())
            if self.window:
                self.sliding_pairs += int((lengths * lengths.clamp(max=self.window)).sum())
            self.loss_tokens_seen += int((inputs["labels"][:, 1:] != -100).sum())
        return super().compute_loss(model, inputs, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        start = time.perf_counter()
        super()._save_checkpoint(model, trial)
        self.checkpoint_seconds += time.perf_counter() - start


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


class DivergenceGuard(TrainerCallback):
    """Stops training with a TrainingError when a logged loss or gradient norm shows the run
    has diverged (:func:`divergence_reason`), after removing every checkpoint whose weights
    were not measured good, so a rerun with a fixed config resumes from a good state.

    The loss and gradient norm logged at step N are computed on the weights before update N:
    a good log at step N vouches for the weights of step N - 1, and checkpoint-N (after update
    N) is unmeasured. So the good checkpoints are those up to the last good log's step - 1."""

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
        measured_good = max(self.last_good_step - 1, 0)
        if state.is_world_process_zero:
            remove_checkpoints_after(self.checkpoint_dir, measured_good)
        raise TrainingError(
            f"training diverged at step {state.global_step}: {reason}; stopped (no model "
            f"saved). Checkpoints up to step {measured_good} (the last weights a logged loss "
            f"measured good) are kept in "
            f"{self.checkpoint_dir} for inspection. Lower training.learning_rate, or "
            f"raise training.divergence.max_loss_ratio if the loss spike is expected"
        )


class LogToFile(TrainerCallback):
    """Trainer logs (loss, grad norm, lr) into the job's log, not only the console."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            log.info("step %d/%d: %s", state.global_step, state.max_steps, logs)


def fsdp_config(recipe: Recipe) -> dict:
    """accelerate's FSDP2 settings for the recipe."""
    return {
        "version": 2,
        # FULL_SHARD reshards parameters after forward; SHARD_GRAD_OP keeps them gathered.
        "reshard_after_forward": recipe.fsdp == "full_shard",
        "activation_checkpointing": recipe.activation_checkpointing,
        # Only local rank 0 reads the weights; FSDP2 broadcasts them when it shards.
        "cpu_ram_efficient_loading": True,
        # Checkpoints for resume: each rank writes its own shard (torch.distributed.checkpoint).
        "state_dict_type": "SHARDED_STATE_DICT",
    }


def hybrid_mesh(parallel: Parallelism):
    """accelerate's ParallelismConfig for HSDP (replicate across nodes, shard within); None for
    a flat FSDP2 mesh or no FSDP."""
    if not parallel.fsdp or parallel.replicas == 1:
        return None
    from accelerate.parallelism_config import ParallelismConfig

    replicate, shard = parallel.mesh
    return ParallelismConfig(dp_replicate_size=replicate, dp_shard_size=shard)


def training_arguments(
    job: Job,
    plan: BatchPlan,
    parallel: Parallelism,
    *,
    report_to: tuple[str, ...] = ("tensorboard",),
) -> TrainingArguments:
    """The recipe as TrainingArguments. ``report_to``: the Trainer's loggers (a benchmark on a
    bare image passes none: tensorboard may be missing there)."""
    recipe = job.recipe
    return TrainingArguments(
        output_dir=job.checkpoint_dir,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps or -1,
        per_device_train_batch_size=plan.per_device_batch_size,
        per_device_eval_batch_size=plan.per_device_batch_size,
        prediction_loss_only=True,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        adam_beta1=recipe.adam_betas[0],
        adam_beta2=recipe.adam_betas[1],
        adam_epsilon=recipe.adam_epsilon,
        # The fused kernel computes the same AdamW update in one pass: one launch per step on
        # CUDA, and on CPU about 5x faster than the per-parameter loop (bench/cpu_training.py).
        # It takes FSDP2's sharded (DTensor) parameters on both, so the CPU tests run the
        # optimizer the GPU jobs run.
        optim="adamw_torch_fused",
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_ratio,  # a float below 1 is a ratio of the total steps
        max_grad_norm=recipe.max_grad_norm,
        # Autocast over fp32 master weights (under FSDP the MixedPrecisionPolicy casts too);
        # pure low-precision weights need no autocast.
        bf16=recipe.mixed_precision and recipe.precision == "bf16",
        fp16=recipe.mixed_precision and recipe.precision == "fp16",
        use_cpu=not parallel.cuda,
        ddp_backend="gloo" if parallel.world_size > 1 and not parallel.cuda else None,
        fsdp=parallel.fsdp,
        fsdp_config=fsdp_config(recipe) if parallel.fsdp else None,
        parallelism_config=hybrid_mesh(parallel),
        # FSDP: reduce-scatter every micro-batch instead of no_sync, which would keep full
        # unsharded gradients on every rank until the last micro-batch.
        accelerator_config={"gradient_accumulation_kwargs": {"sync_each_batch": parallel.fsdp}},
        # Without FSDP, checkpointing goes through the model (FSDP does it per wrapped layer).
        activation_checkpointing=recipe.activation_checkpointing and not parallel.fsdp,
        average_tokens_across_devices=True,
        # trainer_state.json of each checkpoint records the tokens trained on so far.
        # (a padding-free batch has no padding and no mask: every token counts)
        include_num_input_tokens_seen="all" if recipe.padding_free else "non_padding",
        logging_strategy="steps",
        logging_steps=recipe.logging_steps,
        # by time (TimedCheckpoints), or every save_steps
        save_strategy="no" if recipe.save_every_minutes else "steps",
        save_steps=recipe.save_steps,
        save_total_limit=2,
        save_only_model=False,
        report_to=list(report_to),
        seed=job.run_seed,
        data_seed=job.run_seed,
        dataloader_drop_last=False,
        remove_unused_columns=False,
        disable_tqdm=False,
    )


def make_trainer(
    job: Job,
    model,
    train_set,
    plan: BatchPlan,
    parallel: Parallelism,
    *,
    args: TrainingArguments | None = None,
    callbacks=(),
    pad_id: int = 0,
) -> CftTrainer:
    """The job's Trainer: its recipe's switches, checkpoint markers (by step or by time), the
    divergence guard, and sequences padded per micro-batch."""
    recipe = job.recipe
    timed = (
        [TimedCheckpoints(recipe.save_every_minutes, recipe.checkpoint_max_overhead)]
        if recipe.save_every_minutes
        else []
    )
    return CftTrainer(
        model=model,
        args=args or training_arguments(job, plan, parallel),
        train_dataset=train_set,
        data_collator=collate_flat
        if recipe.padding_free
        else functools.partial(collate_blocks, pad_id=pad_id),
        callbacks=[
            CheckpointMarker(),
            LogToFile(),
            DivergenceGuard(recipe.divergence.max_loss_ratio, Path(job.checkpoint_dir)),
            *timed,
            *callbacks,
        ],
        recipe=recipe,
        parallel=parallel,
    )
