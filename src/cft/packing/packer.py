"""What a training sequence holds: the packer and its prompt conditioning (cft.packing.tokenize
runs it as the tokenize stage).

Two modes (``packing.mode``):

``document`` (the authors' released code, vectorlm's working ``partial`` packing): every
document is chunked on its own (:func:`chunk_documents`). ``[BOS]`` + prompt + separator and
the text are tokenized separately and concatenated with the document's EOS; that stream is cut
into pieces of ``max_seq_len`` minus two slots, and every piece becomes ``[BOS] piece [EOS]``.
Only a document's first piece carries the prompt; no sequence holds two documents, so no
attention crosses a document boundary; every piece's EOS is a label, even in the middle of a
document; prompt tokens are label -100. The last piece of a document is short: sequences are
stored at their own length and padded per micro-batch at training time (to the longest
sequence of the micro-batch, not to ``max_seq_len``).

``packed`` (the project's alternative): every block holds exactly ``max_seq_len`` tokens (only
the last block of a split is padded):

- ``cpt`` (and ``chat`` on request; the workflow tokenizes the trained methods only): ``[BOS]`` then
  the next slice of the document stream, where documents are separated by EOS.
- ``cft``, ``negcft``, ``autocft``: ``[BOS] + contextual prompt + separator`` then the next slice
  of the stream, so every block is conditioned on a prompt. Prompt tokens get label -100: the
  loss is on the text only. Prompt and text are tokenized separately and the ids concatenated,
  so the mask boundary is exact. The prompt is drawn uniformly per block (seeded), or per
  document, or (``autocft``) taken from the generated prompt of the block's first document.

BOS is added only when the tokenizer adds one itself (Llama-2's ``<s>``; SmolLM2 has none).
With ``prompt_format: chat`` the block is the model's chat template with the prompt as the user
turn and the text as the assistant turn; the template's tokens are masked as well.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from cft.core.errors import CftError
from cft.core.methods import METHODS

TEXT_SENTINEL = "\u0000CFT_TEXT\u0000"


class PackingError(CftError, ValueError):
    """The inputs cannot be packed as configured; the message names the culprit."""


@dataclass(frozen=True)
class Conditioning:
    """Tokens around a block's text: ``prefix`` before it, ``suffix`` after it (both masked)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...] = ()
    prompt_index: int = -1


def tokenizer_bos(tokenizer) -> int | None:
    """The BOS id if the tokenizer prepends one by itself, else None."""
    ids = tokenizer("a").input_ids
    bos = tokenizer.bos_token_id
    return bos if bos is not None and ids and ids[0] == bos else None


def prompt_conditioning(
    tokenizer,
    text: str | None,
    *,
    prompt_format: str,
    separator: str,
    index: int = -1,
    template_kwargs: dict | None = None,
) -> Conditioning:
    """Tokenize the conditioning of a block: nothing but BOS (text None), or a prompt.
    ``template_kwargs``: the chat template's arguments (``models.<name>.chat_template_kwargs``)."""
    bos = tokenizer_bos(tokenizer)
    head = (bos,) if bos is not None else ()
    if text is None:
        return Conditioning(prefix=head)
    if prompt_format == "plain":
        ids = tokenizer(text + separator, add_special_tokens=False).input_ids
        return Conditioning(prefix=head + tuple(ids), prompt_index=index)
    if prompt_format == "chat":
        if not tokenizer.chat_template:
            raise PackingError(
                "packing.prompt_format is 'chat' but the tokenizer has no chat template; "
                "use prompt_format: plain"
            )
        messages = [
            {"role": "user", "content": text},
            {"role": "assistant", "content": TEXT_SENTINEL},
        ]
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, **(template_kwargs or {})
        )
        before, _, after = rendered.partition(TEXT_SENTINEL)
        prefix = tokenizer(before, add_special_tokens=False).input_ids
        suffix = tokenizer(after, add_special_tokens=False).input_ids if after else []
        return Conditioning(prefix=tuple(prefix), suffix=tuple(suffix), prompt_index=index)
    raise PackingError(f"unknown prompt_format {prompt_format!r}; expected 'plain' or 'chat'")


def stable_int(*parts) -> int:
    """A 64-bit integer from strings/ints, identical on every machine and Python run."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


# ---- the packer -------------------------------------------------------------------------------


@dataclass
class PackStats:
    documents: int = 0
    document_tokens: int = 0  # document tokens plus one EOS per document
    text_tokens: int = 0  # of those, placed in blocks (must equal document_tokens)
    prompt_tokens: int = 0  # BOS, prompt, separator and template tokens (label -100)
    pad_tokens: int = 0
    blocks: int = 0
    prompt_counts: dict = field(default_factory=dict)

    def as_dict(self, max_seq_len: int, total: int | None = None) -> dict:
        """``total``: the stored tokens (every block is ``max_seq_len`` in the packed mode;
        document chunks are stored at their own length, padding comes at batch time)."""
        total = self.blocks * max_seq_len if total is None else total
        return {
            "documents": self.documents,
            "document_tokens": self.document_tokens,
            "text_tokens": self.text_tokens,
            "prompt_tokens": self.prompt_tokens,
            "pad_tokens": self.pad_tokens,
            "total_tokens": total,
            "blocks": self.blocks,
            "loss_bearing_fraction": self.text_tokens / total if total else 0.0,
            "non_pad_fraction": (total - self.pad_tokens) / total if total else 0.0,
            "prompt_counts": dict(sorted(self.prompt_counts.items())),
        }


def pack(
    documents: Iterator[tuple[str, np.ndarray]],
    *,
    max_seq_len: int,
    eos_id: int,
    pad_id: int,
    condition: Callable[[int, str], Conditioning],
    stats: PackStats,
) -> Iterator[dict[str, np.ndarray | int]]:
    """Pack a stream of (doc_id, token ids) into blocks of exactly ``max_seq_len`` tokens.

    ``condition(block_index, doc_id)`` gives the conditioning of a block from the document the
    block starts in. Every document token (and one EOS after each document) lands in exactly
    one block; only the last block is padded. Blocks are NumPy arrays (int32 ids and labels,
    int8 attention mask), so a block costs a few array copies, not a Python loop per token.
    """
    cond: Conditioning | None = None
    text = np.empty(max_seq_len, dtype=np.int32)
    filled = capacity = 0
    eos = np.array([eos_id], dtype=np.int32)

    def emit() -> dict[str, np.ndarray | int]:
        prefix, suffix = len(cond.prefix), len(cond.suffix)
        used = prefix + filled + suffix
        pad = max_seq_len - used
        stats.blocks += 1
        stats.text_tokens += filled
        stats.prompt_tokens += prefix + suffix
        stats.pad_tokens += pad
        stats.prompt_counts[cond.prompt_index] = stats.prompt_counts.get(cond.prompt_index, 0) + 1
        input_ids = np.full(max_seq_len, pad_id, dtype=np.int32)
        input_ids[:prefix] = cond.prefix
        input_ids[prefix : prefix + filled] = text[:filled]
        input_ids[prefix + filled : used] = cond.suffix
        labels = np.full(max_seq_len, -100, dtype=np.int32)
        labels[prefix : prefix + filled] = text[:filled]
        attention_mask = np.zeros(max_seq_len, dtype=np.int8)
        attention_mask[:used] = 1
        return {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": attention_mask,
            "prompt_index": cond.prompt_index,
        }

    for doc_id, ids in documents:
        stats.documents += 1
        stream = np.concatenate([np.asarray(ids, dtype=np.int32), eos])
        stats.document_tokens += len(stream)
        pos = 0
        while pos < len(stream):
            if cond is None:
                cond = condition(stats.blocks, doc_id)
                capacity = max_seq_len - len(cond.prefix) - len(cond.suffix)
                if capacity <= 0:
                    raise PackingError(
                        f"prompt {cond.prompt_index} takes {len(cond.prefix) + len(cond.suffix)} "
                        f"tokens, which leaves no room for text in a block of max_seq_len "
                        f"{max_seq_len}; shorten the prompt or raise training.max_seq_len"
                    )
            take = min(capacity - filled, len(stream) - pos)
            text[filled : filled + take] = stream[pos : pos + take]
            filled += take
            pos += take
            if filled == capacity:
                yield emit()
                cond, filled = None, 0
    if cond is not None and filled:
        yield emit()


def chunk_documents(
    documents: Iterator[tuple[str, np.ndarray]],
    *,
    max_seq_len: int,
    bos_id: int | None,
    eos_id: int,
    condition: Callable[[int, str], Conditioning],
    stats: PackStats,
    wrapping: str,
) -> Iterator[dict[str, np.ndarray | int]]:
    """The ``document`` mode, as vectorlm's ``preprocess_data.py`` (9045f08) prepares data.

    A document becomes the stream ``[BOS] prompt text [EOS]`` (the authors wrap the document
    string in BOS and EOS before tokenizing), with labels ``BOS, -100 x prompt, text, EOS``:
    the document's own BOS and EOS are targets, the prompt is not. The stream is cut into
    pieces of ``max_seq_len`` minus two slots, and each piece is wrapped again as
    ``[BOS] piece [EOS]`` (the wrapper EOS is a target, the wrapper BOS opens the sequence).
    So a document's first sequence starts with two BOS and its last ends with two EOS; only
    the first piece holds the prompt; the last piece is stored unpadded.
    ``condition(document_index, doc_id)`` gives the document's prompt.

    ``wrapping="single"`` (``packing.document_wrapping``) wraps once: every piece opens with
    BOS, and EOS ends the document's last piece only, as a target; no doubled BOS or EOS, no
    EOS to learn in the middle of a document.
    """
    authors = wrapping == "authors"
    if wrapping not in ("authors", "single"):
        raise PackingError(f"unknown document wrapping {wrapping!r}; expected authors or single")
    head = [bos_id] if bos_id is not None else []
    own_head = head if authors else []  # the document's own BOS, inside the stream
    tail = [eos_id] if authors else []  # every piece's wrapper EOS
    room = max_seq_len - len(head) - len(tail)
    for index, (doc_id, ids) in enumerate(documents):
        cond = condition(index, doc_id)
        if cond.suffix:
            raise PackingError(
                "packing.mode 'document' takes plain prompts (packing.prompt_format: plain); "
                "the chat format's closing template tokens have no place in a chunk"
            )
        prompt = list(cond.prefix[len(head) :])
        if len(own_head) + len(prompt) >= room:
            raise PackingError(
                f"prompt {cond.prompt_index} takes {len(prompt)} tokens, which leaves no room "
                f"for text in a sequence of max_seq_len {max_seq_len}; shorten the prompt or "
                f"raise training.max_seq_len"
            )
        text = np.asarray(ids, dtype=np.int32)
        stream = np.concatenate([own_head, prompt, text, [eos_id]]).astype(np.int32)
        targets = np.concatenate([own_head, [-100] * len(prompt), text, [eos_id]])
        targets = targets.astype(np.int32)
        stats.documents += 1
        stats.prompt_counts[cond.prompt_index] = stats.prompt_counts.get(cond.prompt_index, 0) + 1
        for start in range(0, len(stream), room):
            input_ids = np.concatenate([head, stream[start : start + room], tail])
            labels = np.concatenate([[-100] * len(head), targets[start : start + room], tail])
            input_ids, labels = input_ids.astype(np.int32), labels.astype(np.int32)
            loss_tokens = int(np.count_nonzero(labels != -100))
            stats.blocks += 1
            stats.document_tokens += loss_tokens
            stats.text_tokens += loss_tokens
            stats.prompt_tokens += len(input_ids) - loss_tokens
            yield {
                "input_ids": input_ids,
                "labels": labels,
                "attention_mask": np.ones(len(input_ids), dtype=np.int8),
                "prompt_index": cond.prompt_index,
            }


# ---- choosing prompts -------------------------------------------------------------------------


def make_condition(
    method: str,
    tokenizer,
    *,
    prompts: list[str],
    autogen: dict[str, str] | None,
    packing: dict,
    seed: int,
    template_kwargs: dict | None = None,
) -> Callable[[int, str], Conditioning]:
    """The block -> conditioning function for a method."""
    fmt, sep = packing["prompt_format"], packing["prompt_separator"]
    chat = {"template_kwargs": template_kwargs}
    if METHODS[method].prompts is None:
        plain = prompt_conditioning(tokenizer, None, prompt_format="plain", separator=sep)
        return lambda block, doc_id: plain
    if METHODS[method].generated_prompts:
        if autogen is None:
            raise PackingError(f"method {method!r} needs the generated prompt table")
        cache: dict[str, Conditioning] = {}

        def from_table(block: int, doc_id: str) -> Conditioning:
            if doc_id not in autogen:
                raise PackingError(f"no generated prompt for document {doc_id!r}")
            if doc_id not in cache:
                cache[doc_id] = prompt_conditioning(
                    tokenizer, autogen[doc_id], prompt_format=fmt, separator=sep, index=0, **chat
                )
            return cache[doc_id]

        return from_table
    tokenized = [
        prompt_conditioning(tokenizer, text, prompt_format=fmt, separator=sep, index=i, **chat)
        for i, text in enumerate(prompts)
    ]
    if packing["prompt_sampling"] == "per_document":
        return lambda block, doc_id: tokenized[stable_int(seed, doc_id) % len(tokenized)]
    rng = np.random.default_rng(seed)
    return lambda block, doc_id: tokenized[int(rng.integers(len(tokenized)))]
