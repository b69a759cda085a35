"""What a training run measured: FLOPs per token, MFU, throughput, memory, the probes that read
the run's speed and dtypes off the live objects (the training loop's wall time, the precision
really used, the gradient reduction dtype, FSDP2's mesh), and the run's metrics record
(``train_metrics.json``)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass, field

from transformers import TrainerCallback

from cft.core.attention import layer_attention
from cft.core.settings import stage_provenance, stage_settings
from cft.training.launch import BatchPlan
from cft.training.recipe import Job, Recipe

# Dense bf16 peak FLOP/s by device name, most specific first (NVIDIA data sheets: H100 SXM 989,
# PCIe 756, NVL 835; A100 312; H200 989). Unknown devices get no MFU, never a guess.
PEAK_FLOPS = (
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)


def flops_per_token(
    n_params: int, n_embedding_params: int, attention_width: int, layer_spans: list[float]
) -> float:
    """Training FLOPs per token, torchtitan's convention: 6 per non-embedding parameter (the
    input embedding is a lookup, not a matmul) plus 12 * d * T per layer for attention scores
    and values, d the width of the queries (heads x head size, which is not the hidden size in
    Gemma-3; grouped key/value heads change the projections, counted in the parameters, not
    the scores) and T the span a token of that layer attends over (:func:`attention_span`:
    the sequence's, or a sliding layer's window)."""
    return 6 * (n_params - n_embedding_params) + 12 * attention_width * sum(layer_spans)


def attention_span(tokens: int, attention_pairs: int) -> float | None:
    """The token-weighted mean span, sum(T_i * S_i) / sum(T_i) over sequences of lengths T_i
    whose tokens attend over S_i = T_i (full attention) or min(T_i, window) (a sliding
    layer): the T that makes 12*d*T per token equal the layer's attention FLOPs. Full
    blocks give max_seq_len; short document chunks give less."""
    return attention_pairs / tokens if tokens else None


def lookup_only_parameters(model) -> int:
    """The input embedding's parameters when they are a lookup only (no FLOPs); 0 when the
    embedding is tied to the output head (SmolLM2), whose matmul uses them on every token."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == embedding.data_ptr()
    return 0 if tied else embedding.numel()


def language_model_parameters(model) -> int:
    """The parameters a text token passes through: the decoder's and the output head's (once,
    if tied). A multimodal checkpoint's vision tower and projector are left out: text-only
    training runs no FLOPs in them."""
    decoder = model.get_decoder()
    counted = {id(p): p.numel() for p in decoder.parameters()}
    head = model.get_output_embeddings()
    if head is not None:
        counted.setdefault(id(head.weight), head.weight.numel())
    return sum(counted.values())


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


def run_loss_mean(rows: list[dict]) -> float | None:
    """The mean training loss over every optimizer step of the run, across its attempts: each
    logged loss (the mean over the steps since the log before it) weighted by the steps it
    covers. The Trainer's own ``training_loss`` sums only the last attempt's steps, so a
    resumed run's would depend on where it resumed; the log history comes back with the
    checkpoint, so this does not."""
    total, steps, last = 0.0, 0, 0
    for row in rows:
        span = row["step"] - last
        total, steps, last = total + row["loss"] * span, steps + span, row["step"]
    return total / steps if steps else None


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs of the model."""

    parameters: int  # the language model's (a vision tower does no work on text)
    embedding_parameters: int  # lookup-only (0 when tied to the output head)
    attention_width: int  # query heads x head size
    layer_windows: tuple[int | None, ...]  # each layer's sliding window; None: full attention

    @classmethod
    def of(cls, model) -> ModelShape:
        # The language model's shape: a multimodal checkpoint (Gemma-3 4B and up,
        # Gemma3ForConditionalGeneration) keeps it in its text config, and trains as a text model.
        text = model.config.get_text_config()
        head_size = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return cls(
            parameters=language_model_parameters(model),
            embedding_parameters=lookup_only_parameters(model),
            attention_width=text.num_attention_heads * head_size,
            layer_windows=tuple(window for _, window in layer_attention(model.config)),
        )

    @property
    def sliding_window(self) -> int | None:
        return next((window for window in self.layer_windows if window), None)

    def flops_per_token(self, span: float, sliding_span: float | None = None) -> float:
        """:func:`flops_per_token` of this model over sequences of mean span ``span``; a
        sliding layer's span is ``sliding_span``, or min(window, span) for sequences of one
        length."""
        spans = [
            span if window is None else (sliding_span or min(window, span))
            for window in self.layer_windows
        ]
        return flops_per_token(
            self.parameters, self.embedding_parameters, self.attention_width, spans
        )


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
    shape: ModelShape
    loss_chunk_rows: int | None  # the chunked loss's tokens per chunk; None: full logits
    weight_readers: list[int]  # per rank: 1 if it read the weights from disk
    resumed_from: str | None
    optimizer_steps: int
    steps_this_run: int
    tokens: int
    loss_tokens: int
    attention_pairs: int  # sum over trained sequences of their real length squared
    sliding_pairs: int  # the same, each length times min(length, the sliding window)
    loop_seconds: float  # the training loop, checkpoint saving excluded
    checkpoint_seconds: float
    final_save_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    loss_rows: list[dict]
    eval_loss: float | None
    model_fingerprint: str
    data_stats: dict
    device_mesh: dict | None = None  # FSDP2's live mesh, {dimension name: size}
    attempts: list[dict] = field(default_factory=list)  # checkpoints.attempt_records


def parallelism_label(facts: RunFacts) -> str:
    if facts.fsdp:
        return "hsdp" if (facts.device_mesh or {}).get("dp_replicate", 1) > 1 else "fsdp2"
    return "ddp" if facts.world > 1 else "single"


def metrics_record(facts: RunFacts) -> dict:
    """The run's metrics.json: identity, parallelism and precision, batch layout, speed and
    MFU, losses and provenance. Pure: everything comes from ``facts``."""
    job, recipe, world, shape = facts.job, facts.recipe, facts.world, facts.shape
    span = attention_span(facts.tokens, facts.attention_pairs) or recipe.max_seq_len
    window = shape.sliding_window
    sliding_span = None
    if window:
        sliding_span = attention_span(facts.tokens, facts.sliding_pairs)
        if sliding_span is None:  # no tokens counted
            sliding_span = min(window, span)
    speed = throughput_metrics(
        tokens=facts.tokens,
        loss_tokens=facts.loss_tokens,
        loop_seconds=facts.loop_seconds,
        world=world,
        flops_per_token=shape.flops_per_token(span, sliding_span),
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
        "parallelism": parallelism_label(facts),
        "device_mesh": facts.device_mesh,
        "precision": facts.precision,
        "ranks_that_read_weights": [r for r, did in enumerate(facts.weight_readers) if did],
        "batch": asdict(facts.plan) | {"global_batch_size": facts.plan.global_batch_size},
        "optimizer_steps": facts.optimizer_steps,
        "steps_this_run": facts.steps_this_run,
        "resumed_from": facts.resumed_from,
        "attempts": facts.attempts,
        "epochs": recipe.epochs,
        "seq_len": recipe.max_seq_len,
        "attention_span": span,  # the mean attention span the FLOP count used
        "sliding_attention_span": sliding_span,  # a sliding layer's (None: no sliding layers)
        "sliding_layers": sum(w is not None for w in shape.layer_windows),
        "layers": len(shape.layer_windows),
        "attention_width": shape.attention_width,
        "parameters": shape.parameters,
        "embedding_parameters": shape.embedding_parameters,
        "attn_implementation": facts.attn_implementation,
        "loss_chunk_rows": facts.loss_chunk_rows,
        "train_seconds_this_run": facts.loop_seconds,
        "checkpoint_seconds_this_run": facts.checkpoint_seconds,
        "final_save_seconds": facts.final_save_seconds,
        "wall_seconds": facts.wall_seconds,
        "tokens_this_run": facts.tokens,
        "loss_tokens_this_run": facts.loss_tokens,
        **speed,
        "peak_memory_mb": facts.peak_memory_mb,
        "train_loss_mean": run_loss_mean(facts.loss_rows),
        "final_loss": facts.loss_rows[-1]["loss"] if facts.loss_rows else None,
        "eval_loss": facts.eval_loss,
        "model_fingerprint": facts.model_fingerprint,
        "data": {"tokenized": job.tokenized_dir, "fingerprint": facts.data_stats["fingerprint"]},
        "provenance": stage_provenance(
            "train",
            stage_settings(job.config, "train", model=job.model),
            seed=job.run_seed,
            backend="cuda" if cuda else "cpu",
        ),
    }


class Throughput(TrainerCallback):
    """Wall time of the training loop in this process (a resumed run counts its own)."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start
        self.steps = state.global_step - self.first_step


class PrecisionProbe(TrainerCallback):
    """Records the dtypes training really used, read off the live objects after the first
    optimizer step: the (local shards of the) parameters, the AdamW state, and the output of
    the first linear layer in the forward pass."""

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
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
        self.record["optimizer"] = type(inner).__name__ + (
            " (fused)" if inner.defaults.get("fused") else ""
        )
        if self._hook is not None:
            self._hook.remove()


def gradient_reduction_dtype(trainer, parameter_dtype: str | None) -> str | None:
    """The dtype gradients are reduced in across ranks (None in one process): the FSDP2
    policy's reduce dtype, or else (DDP, FSDP2 without a policy) the parameters' own dtype."""
    if trainer.accelerator.num_processes == 1:
        return None
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    policy = getattr(plugin, "mixed_precision_policy", None) if plugin else None
    reduce = getattr(policy, "reduce_dtype", None)
    return str(reduce).removeprefix("torch.") if reduce is not None else parameter_dtype


def live_mesh(trainer) -> dict | None:
    """The device mesh accelerate built for FSDP2, read off the live object."""
    mesh = getattr(trainer.accelerator, "torch_device_mesh", None)
    if mesh is None:
        return None
    return dict(zip(mesh.mesh_dim_names or (), mesh.mesh.shape, strict=True))
