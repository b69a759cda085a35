"""Fine-tuning one (domain, model, method) on its packed blocks: transformers Trainer, FSDP2 on
GPUs. A package along torchtitan's lines; each module owns one concern:

- :mod:`~cft.training.launch`: job resources (the config's over built-in defaults), batch
  arithmetic, the launch command. Light: the workflow's rules import it without importing
  transformers.
- :mod:`~cft.training.recipe`: the ``training`` section as a typed, immutable :class:`Recipe`
  (precision resolved once per job) and the :class:`Job` handed to every process.
- :mod:`~cft.training.trainer`: the Trainer subclass, TrainingArguments, the divergence guard
  and logging callbacks.
- :mod:`~cft.training.data`: the packed blocks checked against their record, and the
  micro-batch collators (padded or padding-free).
- :mod:`~cft.training.checkpoints`: one live job per run (a lock), resumable checkpoints
  (completion markers, run keys, when one is due) and their Trainer callbacks.
- :mod:`~cft.training.loss`: the causal-LM loss over chunks of loss tokens, for large
  vocabularies (``chunked_loss``).
- :mod:`~cft.training.model`: loading the base model (one reader per node under FSDP), LoRA,
  saving the final weights and the files beside them.
- :mod:`~cft.training.metrics`: FLOPs, MFU, throughput, the probes of speed, dtypes, gradient
  reduction and mesh, and the run's metrics record.
- :mod:`~cft.training.run`: one training process (``train``), the launcher (``launch``) and the
  command line (``python -m cft.training``).

The recipe is the config's ``training`` section (config/paper.yaml: the authors' 1 epoch, global
batch 128, lr 2e-5, AdamW (0.9, 0.95), weight decay 0.1, cosine with 5% warmup, clip 1.0, pure
bf16 weights, FULL_SHARD, activation checkpointing). What the package adds around the Trainer:

- batch arithmetic: the global batch is fixed by config; micro-batch size and gradient
  accumulation follow from the job's devices (:func:`~cft.training.launch.plan_batch`);
- loss normalisation: the Trainer's token-weighted loss over the whole global batch, or the
  authors' per-micro-batch mean (``loss_normalization``);
- precision: ``master_weights: fp32`` keeps fp32 weights and optimizer state and computes in
  ``precision`` (autocast without FSDP; FSDP2's MixedPrecisionPolicy with gradients reduced in
  fp32); ``master_weights: bf16`` is the authors' pure bf16 (weights, optimizer state and compute);
- FSDP2 with gradient accumulation reduce-scatters every micro-batch (``sync_each_batch``);
- launch: one process, ``torchrun`` on one node, ``srun torchrun --rdzv-backend c10d`` on
  several (hybrid sharding: within a node, replicated across); ``cpu_processes_per_node`` runs
  the same distributed path on CPU processes (gloo);
- padding: micro-batches padded to their longest sequence, or padding-free (one row of
  concatenated sequences with restarting position ids, ``padding_free``);
- checkpoints every ``save_steps`` or by training time (``save_every_minutes``, within a
  measured-cost budget), and on a signal (``checkpoint_on_signal``), sharded under FSDP, with
  a completion marker; resume from the last complete one; the final model appears only when
  training has finished; every attempt of a run recorded, with its own log;
- metrics: tokens/s, MFU (torchtitan's FLOPs convention, attention over the real sequence
  lengths), peak memory, wall time with checkpoint saving timed apart, losses.
"""

from cft.core.errors import CftError


class TrainingError(CftError, RuntimeError):
    """Training cannot start (or go on) as configured; the message names the culprit."""


class TrainingStopped(TrainingError):
    """Training stopped on a signal after saving a complete checkpoint; rerun to resume."""
