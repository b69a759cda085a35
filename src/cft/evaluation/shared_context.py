"""lm-eval's hf backend with one forward pass per context instead of one per option.

A multiple-choice task asks lm-eval for the log-likelihood of every option after the same
context; the hf backend runs ``context + option`` once per option and shares work only when
options are one token long (a comment in that method asks for the rest). Here each context's
options run in one sequence, ``context, option 1, option 2, ...``, under an attention mask that
lets every option token see the context and the earlier tokens of its own option only, with the
position ids each token has in its own ``context + option`` sequence. Every option's
log-probabilities are therefore those of the plain backend up to float rounding
(tests/integration/test_evaluation.py compares the two on every request of a task), at a
fraction of the tokens: the demo's cloze questions (a 16-token context, four options of ~3
tokens) need 2.6x fewer.

Sliding-window attention (Gemma-2/3, Mistral v0.1, Qwen with ``use_sliding_window``) keeps
its semantics: a sliding layer's mask also hides keys whose position is a window or more
before the query's, computed from the same position ids, and models whose layers mix full and
sliding attention get one mask per layer type (the ``{layer_type: mask}`` form transformers'
hybrid models take). Without this, a prepared 4-D mask would turn every sliding layer into a
full one past the window.

Requests longer than the model's context, which the hf backend truncates from the left,
encoder-decoder models, models that take no position ids (ALiBi), layer types other than full
and sliding attention, and attention kernels other than sdpa (eager attention adds a mask to
the scores, flash-attention takes none) go to the hf backend's own code unchanged.
"""

from __future__ import annotations

import inspect
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from cft.core.attention import FULL, SLIDING, layer_attention

# The backend's name in lm-eval's registry (`evaluation.share_context`).
SHARED_CONTEXT_BACKEND = "hf-shared-context"


def packed_group(context: list[int], continuations: list[list[int]]):
    """One sequence for a context and its continuations: (tokens, position ids, segment of each
    token: 0 the context, i > 0 continuation i, and for continuation i the indices whose logits
    predict its tokens). A continuation's last token predicts nothing that is scored, so it is
    not fed."""
    tokens, positions, segments = list(context), list(range(len(context))), [0] * len(context)
    targets = []
    for number, continuation in enumerate(continuations, start=1):
        start = len(tokens)
        fed = continuation[:-1]
        tokens += fed
        positions += range(len(context), len(context) + len(fed))
        segments += [number] * len(fed)
        # the first token is predicted by the context's last position, token j by token j-1
        targets.append([len(context) - 1, *range(start, start + len(fed))])
    return tokens, positions, segments, targets


def attention_mask(
    segments: torch.Tensor, positions: torch.Tensor | None = None, window: int | None = None
) -> torch.Tensor:
    """Boolean (batch, 1, T, T) mask, True where a query may attend: causal, and a
    continuation sees the context (segment 0) and its own segment; padding (segment -1) sees
    itself only, so that no row is empty. ``window``: a sliding layer's, where a query sees
    only the keys whose ``positions`` are less than ``window`` before its own, as in its own
    ``context + option`` sequence."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    query, key = segments[:, :, None], segments[:, None, :]
    visible = (key == 0) | (key == query)
    mask = causal & visible & (query >= 0) & (key >= 0)
    if window is not None:
        mask &= positions[:, :, None] - positions[:, None, :] < window
    mask |= torch.eye(length, dtype=torch.bool)
    return mask[:, None]


# The attention kernel whose prepared boolean 4-D masks are used as given (eager attention
# adds the mask to the scores; flash-attention takes none).
MASK_KERNEL = "sdpa"


def layer_windows(model) -> dict[str, int | None] | None:
    """The attention window of each kind of layer of ``model`` (None: full attention), keyed
    by the names of its ``layer_types``, or ``{"": window}`` where every layer is of one kind;
    None where the shared-context pass cannot reproduce the model's attention."""
    if getattr(model.config.get_text_config(), "_attn_implementation", None) != MASK_KERNEL:
        return None
    windows = dict(layer_attention(model.config))
    if not set(windows) <= {FULL, SLIDING}:
        return None
    if len(windows) == 1:
        return {"": next(iter(windows.values()))}
    return windows


def model_mask(segments, positions, windows: dict[str, int | None]):
    """The ``attention_mask`` argument: one mask, or one per layer type."""
    masks = {kind: attention_mask(segments, positions, window) for kind, window in windows.items()}
    return masks.get("", masks)


def to_device(mask, device):
    return {k: m.to(device) for k, m in mask.items()} if isinstance(mask, dict) else mask.to(device)


def takes_position_ids(model) -> bool:
    """Whether the model places tokens by the position ids it is given (RoPE or learned
    positions: Llama, Mistral, GPT-2, ...). Models that derive positions from the mask
    (ALiBi: BLOOM) take none, and go to lm-eval's own code."""
    return "position_ids" in inspect.signature(model.forward).parameters


@register_model(SHARED_CONTEXT_BACKEND)
class SharedContextHFLM(HFLM):
    """lm-eval's ``HFLM`` whose log-likelihood requests share one forward pass per context."""

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        windows = layer_windows(self.model)
        if self.backend != "causal" or not takes_position_ids(self.model) or windows is None:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        results: list = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        too_long = []
        for index, (_, context, continuation) in enumerate(requests):
            if len(context) + len(continuation) > self.max_length + 1:
                too_long.append(index)
            else:
                groups[tuple(context)].append(index)
        if too_long:  # truncated from the left by the hf backend, as lm-eval does
            for index, answer in zip(
                too_long,
                super()._loglikelihood_tokens([requests[i] for i in too_long], True, override_bs),
                strict=True,
            ):
                results[index] = answer
        packed = []
        for context, members in groups.items():
            continuations = [requests[i][2] for i in members]
            tokens, positions, segments, targets = packed_group(list(context), continuations)
            packed.append((members, tokens, positions, segments, targets, continuations))
        packed.sort(key=lambda group: -len(group[1]))  # like lengths batched together
        batch_size = self.batch_size if isinstance(self.batch_size, int) else 16
        progress = tqdm(
            total=len(requests) - len(too_long),
            disable=disable_tqdm or self.rank != 0,
            desc="Running loglikelihood requests (shared contexts)",
        )
        for start in range(0, len(packed), batch_size):
            batch = packed[start : start + batch_size]
            scored = self._score(batch, windows)
            for members, scores in zip((g[0] for g in batch), scored, strict=True):
                for index, answer in zip(members, scores, strict=True):
                    results[index] = answer
                    self.cache_hook.add_partial("loglikelihood", requests[index][0], answer)
                    progress.update(1)
        progress.close()
        return results

    def _score(self, batch, windows) -> list[list[tuple[float, bool]]]:
        """(log-likelihood, greedy) of every continuation of every group in one forward pass;
        ``windows``: :func:`layer_windows` of the model."""
        length = max(len(group[1]) for group in batch)
        shape = (len(batch), length)
        tokens = torch.zeros(shape, dtype=torch.long)  # padding: any id, it sees itself only
        positions = torch.zeros(shape, dtype=torch.long)
        segments = torch.full(shape, -1, dtype=torch.long)
        for row, (_, ids, pos, seg, _, _) in enumerate(batch):
            tokens[row, : len(ids)] = torch.tensor(ids)
            positions[row, : len(ids)] = torch.tensor(pos)
            segments[row, : len(ids)] = torch.tensor(seg)
        with (
            torch.no_grad(),
            torch.autocast(  # as lm-eval's own model call
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            logits = self.model(
                input_ids=tokens.to(self.device),
                attention_mask=to_device(model_mask(segments, positions, windows), self.device),
                position_ids=positions.to(self.device),
            ).logits
        scores = []
        for row, (_, _, _, _, targets, continuations) in enumerate(batch):
            group = []
            for target_rows, continuation in zip(targets, continuations, strict=True):
                # only the scored positions are upcast: the whole batch's logits in fp32
                # would cost 4 bytes per token x vocabulary entry (~17 GB at 16 x 1,024
                # tokens of a 262k vocabulary)
                rows = F.log_softmax(  # (len(continuation), vocab)
                    logits[row, target_rows], dim=-1, dtype=self.softmax_dtype
                )
                wanted = torch.tensor(continuation, device=rows.device)
                picked = rows.gather(1, wanted[:, None]).squeeze(1)
                greedy = bool((rows.argmax(dim=-1) == wanted).all())
                group.append((float(picked.sum()), greedy))
            scores.append(group)
        return scores
