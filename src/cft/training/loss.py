"""The causal-LM loss without the full logits: the output head and the cross-entropy run over
chunks of loss-bearing tokens, each chunk's logits recomputed in the backward pass instead of
kept (activation checkpointing of the head).

transformers' causal LMs compute ``lm_head(hidden)`` over every position and upcast it to fp32
for the loss: about 16 bytes per (token x vocabulary entry) live at once, ~27 GiB per GPU for
Llama-3's 128k vocabulary at a micro-batch of 4 x 4,096 tokens and ~56 GiB for Gemma-3's 262k.
Here only the tokens that carry a label go through the head (CFT's masked prompts do not),
``chunk_rows`` of them at a time, so the head's memory is one chunk's logits. The loss and
gradients are those of the full path up to float summation order
(tests/integration/test_training.py compares them on a 128k-vocabulary model).
"""

from __future__ import annotations

import functools
import logging
import types

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from cft.training import TrainingError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# One chunk's fp32 logits: 256 MiB (523 tokens of Llama-3's 128k vocabulary, 256 of Gemma-3's
# 262k); its forward and backward peak at about three times that (bench/chunked_loss.py).
CHUNK_LOGIT_BYTES = 1 << 28
# ``training.chunked_loss: auto`` chunks when one micro-batch's fp32 logits would exceed this:
# Llama-3 (128k) and Gemma-3 (262k) at 4 x 4,096 tokens do; Llama-2 (32k) there, and the
# demo, do not.
AUTO_LOGIT_BYTES = 4 << 30
# Config attributes that rescale logits in ways the chunked head does not reproduce.
LOGIT_SCALES = ("logit_scale", "logits_scaling", "output_multiplier_scale")


def chunk_rows(vocab_size: int) -> int:
    """Tokens per chunk: :data:`CHUNK_LOGIT_BYTES` of fp32 logits."""
    return max(1, CHUNK_LOGIT_BYTES // (4 * vocab_size))


def chunked(setting: str | bool, micro_batch_tokens: int, vocab_size: int) -> bool:
    """Whether a job chunks its loss: ``training.chunked_loss`` true or false, or ``auto``
    above :data:`AUTO_LOGIT_BYTES` of fp32 logits per micro-batch."""
    if setting == "auto":
        return micro_batch_tokens * vocab_size * 4 > AUTO_LOGIT_BYTES
    return bool(setting)


def _chunk_loss_sum(hidden, weight, bias, targets, softcap):
    logits = F.linear(hidden, weight, bias).float()  # as transformers' loss upcasts
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_cross_entropy(
    hidden: torch.Tensor,
    head: torch.nn.Linear,
    labels: torch.Tensor,
    *,
    rows: int,
    softcap: float | None = None,
    num_items_in_batch=None,
) -> torch.Tensor:
    """transformers' ``ForCausalLMLoss`` of ``head(hidden)`` against ``labels`` (shifted by one
    here, -100 ignored): the sum over loss tokens divided by ``num_items_in_batch``, or their
    mean without it; ``softcap``: Gemma-2's final logit soft-capping."""
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1)
    flat = hidden.reshape(-1, hidden.shape[-1])
    keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)
    flat, targets = flat.index_select(0, keep), targets.index_select(0, keep)
    if not len(targets):  # nothing to predict: a zero that still reaches the graph
        return hidden.sum() * 0.0
    total = flat.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), rows):
        part = slice(start, start + rows)
        total = total + checkpoint(
            _chunk_loss_sum, flat[part], head.weight, head.bias, targets[part], softcap,
            use_reentrant=False,
        )  # fmt: skip
    if num_items_in_batch is None:
        return total / len(targets)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def unsupported(model) -> str | None:
    """Why the chunked loss would not reproduce ``model``'s logits, or None."""
    config = model.config.get_text_config()
    scales = [name for name in LOGIT_SCALES if getattr(config, name, None) not in (None, 1, 1.0)]
    if scales:
        return f"{type(model).__name__} rescales its logits ({', '.join(scales)})"
    if not isinstance(model.get_output_embeddings(), torch.nn.Linear):
        return f"{type(model).__name__} has no linear output head"
    return None


def for_job(model, setting: str | bool, micro_batch_tokens: int) -> int | None:
    """Install the chunked loss on ``model`` where ``training.chunked_loss`` asks for it
    (:func:`chunked`); returns the tokens per chunk, or None for the full logits. ``auto``
    keeps the full logits, with a warning, for a model it would not reproduce."""
    vocab = model.get_output_embeddings().weight.shape[0]
    if not chunked(setting, micro_batch_tokens, vocab):
        return None
    reason = unsupported(model)
    if reason and setting == "auto":
        log.warning("training.chunked_loss: auto keeps the full logits: %s", reason)
        return None
    rows = chunk_rows(vocab)
    use_chunked_loss(model, rows)
    return rows


def use_chunked_loss(model, rows: int) -> None:
    """Make ``model``'s forward compute the loss by :func:`chunked_cross_entropy` whenever it
    is given labels (it then returns no logits); without labels it is unchanged. Refuses
    models whose logits it would not reproduce."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    reason = unsupported(model)
    if reason:
        raise TrainingError(
            f"training.chunked_loss: {reason}, which the chunked loss does not reproduce; "
            f"set training.chunked_loss: false"
        )
    config = model.config.get_text_config()
    softcap = getattr(config, "final_logit_softcapping", None)
    full_forward = model.forward
    decoder = model.base_model  # the module whose last_hidden_state feeds the head

    @functools.wraps(full_forward)
    def forward(self, *args, labels=None, num_items_in_batch=None, **kwargs):
        if labels is None:
            return full_forward(*args, **kwargs)
        kwargs.pop("logits_to_keep", None)
        kwargs.pop("use_cache", None)
        outputs = decoder(*args, use_cache=False, **kwargs)
        loss = chunked_cross_entropy(
            outputs.last_hidden_state, self.get_output_embeddings(), labels,
            rows=rows, softcap=softcap, num_items_in_batch=num_items_in_batch,
        )  # fmt: skip
        return CausalLMOutputWithPast(loss=loss)

    model.forward = types.MethodType(forward, model)
