"""The training recipe, typed and immutable, and the job that carries it to every process.

A :class:`Job` resolves its recipe once (``precision: auto`` becomes what the job's device
computes fast) and every part of training reads that one object; nothing is written back into
the config.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from cft.core.config import ConfigError
from cft.core.devices import job_device, native_bf16
from cft.core.io import read_json, write_json

# The torch dtype each precision computes in (fp32: no low-precision compute).
COMPUTE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": None}


@dataclass(frozen=True)
class LoraSettings:
    """``training.lora``: peft adapters instead of full fine-tuning, merged on save."""

    enabled: bool
    r: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]


@dataclass(frozen=True)
class DivergenceSettings:
    """``training.divergence``: when a logged step shows a diverged run."""

    max_loss_ratio: float | None  # None: no loss-ratio check


@dataclass(frozen=True)
class Recipe:
    """The ``training`` section of a validated config, typed: one field per key of the
    schema's ``training`` (tests hold the two equal); the schema fills the defaults.
    ``as_dict()`` is what run keys and provenance hash."""

    epochs: float
    max_steps: int | None  # None: the whole of ``epochs``
    seeds: tuple[int, ...] | None  # one training run per seed; None: the config's seed
    global_batch_size: int
    learning_rate: float
    weight_decay: float
    adam_betas: tuple[float, float]
    adam_epsilon: float
    lr_scheduler: str
    warmup_ratio: float
    max_grad_norm: float
    precision: str  # auto, bf16, fp16 or fp32 (auto: see resolved)
    master_weights: str
    loss_normalization: str
    chunked_loss: str | bool  # auto, true or false (cft.training.loss)
    grad_clipping: str
    weight_decay_params: str
    max_seq_len: int
    padding_free: bool  # micro-batches as one row of concatenated sequences (collate_flat)
    fsdp: str
    multi_node_sharding: str  # hybrid (HSDP) or full, when a job spans several nodes
    activation_checkpointing: bool
    attn_implementation: str
    save_steps: int
    save_every_minutes: float | None  # None: every save_steps steps
    checkpoint_max_overhead: float
    keep_checkpoints: bool
    checkpoint_on_signal: tuple[str, ...]  # signal names (TERM, USR1, ...): checkpoint and stop
    logging_steps: int
    divergence: DivergenceSettings
    eval_at_end: bool
    lora: LoraSettings
    resources: dict  # per model; the job's own are Job.resources

    @classmethod
    def of(cls, config: dict) -> Recipe:
        section = config["training"]
        known = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(section) - known), sorted(known - set(section))
        if unknown or missing:
            raise ConfigError(
                f"training: unknown keys {unknown}, missing keys {missing}; validate the config "
                f"against workflow/schemas/config.schema.yaml first (it fills in the defaults)"
            )
        lora = section["lora"]
        return cls(
            **{
                **section,
                "seeds": tuple(section["seeds"]) if section["seeds"] is not None else None,
                "adam_betas": tuple(section["adam_betas"]),
                "checkpoint_on_signal": tuple(section["checkpoint_on_signal"]),
                "divergence": DivergenceSettings(**section["divergence"]),
                "lora": LoraSettings(**{**lora, "target_modules": tuple(lora["target_modules"])}),
            }
        )

    def as_dict(self) -> dict:
        """The section as the config holds it (tuples back to lists): what runs hash."""
        return json.loads(json.dumps(asdict(self)))

    def resolved(self, *, cuda: bool) -> tuple[Recipe, str | None]:
        """The recipe with ``precision: auto`` replaced by what this machine runs fast (bf16
        autocast over fp32 master weights, or fp32), and the reason; unchanged otherwise."""
        if self.precision != "auto":
            return self, None
        native, reason = native_bf16(cuda=cuda)
        return replace(self, precision="bf16" if native else "fp32"), reason

    @property
    def compute_dtype(self) -> str | None:
        """The low-precision dtype matmuls run in (None: fp32); needs a resolved recipe."""
        if self.precision == "auto":
            raise ValueError("precision 'auto' is not resolved yet (Recipe.resolved)")
        return COMPUTE_DTYPES[self.precision]

    @property
    def master_dtype(self) -> str:
        """The dtype of the parameters and optimizer state: fp32 (mixed precision), or the
        compute dtype itself (``master_weights: bf16``, the authors' pure bf16)."""
        if self.master_weights == "fp32" or self.precision == "fp32":
            return "float32"
        return self.compute_dtype

    @property
    def mixed_precision(self) -> bool:
        """Low-precision compute over fp32 master weights (autocast, or FSDP2's policy)."""
        return self.compute_dtype is not None and self.master_dtype == "float32"


@dataclass(frozen=True)
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
    def run_seed(self) -> int:
        return self.config["seed"] if self.seed is None else self.seed

    @functools.cached_property
    def cuda(self) -> bool:
        """Whether the job trains on GPUs (checked visible when it asks for them)."""
        key = f"training.resources ({self.model}).gpus_per_node"
        gpus = self.resources["gpus_per_node"]
        return job_device(gpus, f"train job {self.label}", key) == "cuda"

    @functools.cached_property
    def _resolution(self) -> tuple[Recipe, str | None]:
        return Recipe.of(self.config).resolved(cuda=self.cuda)

    @property
    def recipe(self) -> Recipe:
        """The recipe this job trains with, precision resolved (once per job)."""
        return self._resolution[0]

    @property
    def precision_reason(self) -> str | None:
        """Why ``precision: auto`` chose what it chose (None: set in config)."""
        return self._resolution[1]

    def save(self, path: Path) -> None:
        write_json(path, {f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: Path) -> Job:
        return cls(**read_json(path))
