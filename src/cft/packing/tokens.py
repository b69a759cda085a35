"""The special tokens a training sequence is built with, decided once per tokenizer and recorded.

A document ends with the model's *end-of-text* token, the one its pretraining put between
documents. Instruct tokenizers set ``eos_token`` to their chat template's *end-of-turn* instead
(Llama-3 ``<|eot_id|>``, Qwen ``<|im_end|>``, Gemma-3 ``<end_of_turn>``, SmolLM2
``<|im_end|>``); learned as a document separator it would teach the model to end a turn in
the middle of text and write on. So the separator is, in order:

1. ``models.<name>.end_of_text`` in the config (a token of the vocabulary), where given;
2. ``eos_token``, when it is not the token the chat template closes an assistant turn with
   (Llama-2's ``</s>``; a base model's tokenizer);
3. else the first of :data:`END_OF_TEXT_TOKENS` the tokenizer holds as a special token;

and a tokenizer that offers none of them stops the stage, naming the key to set. BOS goes in
front only where the tokenizer adds it itself (Llama, Gemma; not Qwen or SmolLM2).
"""

from __future__ import annotations

from dataclasses import dataclass

from cft.packing.packer import PackingError, prompt_conditioning, tokenizer_bos

# The end-of-text tokens of the model families, as their tokenizers spell them: Llama-3,
# Qwen and SmolLM2 (GPT-2's), Gemma, Llama-2 and Mistral.
END_OF_TEXT_TOKENS = ("<|end_of_text|>", "<|endoftext|>", "<eos>", "</s>")


@dataclass(frozen=True)
class SequenceTokens:
    """The ids a packed sequence uses, and why the separator is the one it is."""

    bos: int | None  # prepended to every sequence; None where the tokenizer adds none
    separator: int  # ends every document: the model's end-of-text
    end_of_turn: int | None  # what the chat template closes an assistant turn with
    reason: str

    def record(self, tokenizer) -> dict:
        """The ids with their strings, for stats.json."""

        def named(token_id: int | None) -> dict | None:
            if token_id is None:
                return None
            return {"id": token_id, "token": tokenizer.convert_ids_to_tokens(token_id)}

        return {
            "bos": named(self.bos),
            "separator": named(self.separator),
            "end_of_turn": named(self.end_of_turn),
            "reason": self.reason,
        }


def token_id(tokenizer, token: str) -> int | None:
    """The id of ``token`` if the vocabulary holds it (not the unknown token's id)."""
    found = tokenizer.convert_tokens_to_ids(token)
    return found if found is not None and tokenizer.convert_ids_to_tokens(found) == token else None


def special_ids(tokenizer) -> set[int]:
    """Ids of the tokens the tokenizer treats as special (never split, skipped on decode)."""
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    return ids


def end_of_turn(tokenizer, template_kwargs: dict | None = None) -> int | None:
    """The first special token after an assistant message in the chat template, if any (Llama-2
    writes a space before its ``</s>``): read off the closing tokens the chat packing format
    puts after a block's text."""
    if not tokenizer.chat_template:
        return None
    try:
        closing = prompt_conditioning(
            tokenizer, "question", prompt_format="chat", separator="",
            template_kwargs=template_kwargs,
        ).suffix  # fmt: skip
    except Exception:  # a template that cannot render a turn names no end of it
        return None
    special = special_ids(tokenizer)
    return next((i for i in closing if i in special), None)


def sequence_tokens(
    tokenizer, end_of_text: str | None = None, *, key: str, template_kwargs: dict | None = None
) -> SequenceTokens:
    """Decide the separator (module docstring); ``key`` names the config entry to fix it by,
    e.g. ``models.llama-3-8b-instruct``."""
    bos = tokenizer_bos(tokenizer)
    turn = end_of_turn(tokenizer, template_kwargs)
    if end_of_text is not None:
        separator = token_id(tokenizer, end_of_text)
        if separator is None:
            raise PackingError(
                f"{key}.end_of_text = {end_of_text!r} is not a token of the model's vocabulary"
            )
        return SequenceTokens(bos, separator, turn, f"{key}.end_of_text")
    eos = tokenizer.eos_token_id
    if eos is not None and eos != turn:
        return SequenceTokens(bos, eos, turn, "eos_token, not the chat template's end of turn")
    special = special_ids(tokenizer)
    for token in END_OF_TEXT_TOKENS:
        separator = token_id(tokenizer, token)
        if separator is not None and separator in special:
            why = (
                "eos_token (it ends the chat turn, and is the end-of-text token too)"
                if separator == eos
                else f"eos_token {tokenizer.eos_token!r} ends the chat turn; {token!r} ends text"
            )
            return SequenceTokens(bos, separator, turn, why)
    raise PackingError(
        f"the tokenizer's eos_token {tokenizer.eos_token!r} is its chat template's end of turn "
        f"and it holds none of the end-of-text tokens {list(END_OF_TEXT_TOKENS)}: set "
        f"{key}.end_of_text to the token that separates documents in the model's pretraining"
    )


@dataclass(frozen=True)
class ModelLimits:
    """What a model folder's config allows a sequence: its context and its embedding rows."""

    context: int | None
    vocab_size: int
    source: str  # the config file they were read from

    @classmethod
    def of(cls, model_dir) -> ModelLimits | None:
        """From ``model_dir/config.json`` (the language model's part of a multimodal one);
        None for a folder holding a tokenizer only."""
        from pathlib import Path

        from transformers import AutoConfig

        config_file = Path(model_dir) / "config.json"
        if not config_file.is_file():
            return None
        text = AutoConfig.from_pretrained(model_dir).get_text_config()
        return cls(
            getattr(text, "max_position_embeddings", None), text.vocab_size, str(config_file)
        )

    def check_length(self, max_seq_len: int, key: str) -> None:
        if self.context is not None and max_seq_len > self.context:
            raise PackingError(
                f"training.max_seq_len = {max_seq_len} exceeds the context of {key}, "
                f"{self.context} tokens (max_position_embeddings in {self.source})"
            )

    def check_ids(self, largest_id: int, tokenizer, key: str) -> None:
        """Every id the packer wrote must index a row of the model's embedding (Gemma-3's IT
        tokenizer has one entry more than its model has rows)."""
        if largest_id >= self.vocab_size:
            raise PackingError(
                f"the packed data hold token id {largest_id} "
                f"({tokenizer.convert_ids_to_tokens(largest_id)!r}) but {key} has "
                f"{self.vocab_size} embedding rows (vocab_size in {self.source}): its tokenizer "
                f"and its weights do not match"
            )
