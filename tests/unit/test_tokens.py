"""The document separator is the model's end-of-text token, never its chat end-of-turn
(cft.packing.tokens): on the packaged SmolLM2 tokenizer, a Llama-2-style one (the paper's, whose
`</s>` is both) and tokenizers built to miss one or the other. Today's real tokenizers
(Llama-3, Qwen3, Gemma-3) are tested in tests/integration/test_modern_tokenizers.py."""

from __future__ import annotations

import pytest
from miniature.build import tokenizer as llama2_style_tokenizer

from cft.packing.packer import PackingError
from cft.packing.tokens import sequence_tokens

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}"
)


@pytest.fixture(scope="module")
def smollm2(packaged_tokenizer):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_tokenizer)


def chatml_tokenizer(specials: list[str]):
    """A byte-level BPE tokenizer whose eos_token is ChatML's end of turn, with ``specials``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the liver is an organ"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")
    fast.chat_template = CHATML
    return fast


def test_smollm2_separates_documents_with_its_end_of_text(smollm2):
    tokens = sequence_tokens(smollm2, key="models.smollm2")
    record = tokens.record(smollm2)
    assert record["separator"] == {"id": 0, "token": "<|endoftext|>"}
    assert record["end_of_turn"] == {"id": 2, "token": "<|im_end|>"}
    assert smollm2.eos_token_id == 2 and tokens.bos is None


def test_the_paper_s_llama2_style_tokenizer_keeps_its_eos():
    """Llama-2's `</s>` ends both a turn and a text: the authors' separator, unchanged."""
    tokenizer = llama2_style_tokenizer(["the liver is an organ", "a dose of the drug"])
    tokens = sequence_tokens(tokenizer, key="models.llama-2-7b-chat")
    assert tokens.separator == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("</s>")
    assert tokens.end_of_turn == tokens.separator


def test_a_configured_end_of_text_wins_and_must_be_in_the_vocabulary(smollm2):
    tokens = sequence_tokens(smollm2, "<|im_start|>", key="models.smollm2")
    assert tokens.separator == 1 and tokens.reason == "models.smollm2.end_of_text"
    with pytest.raises(PackingError, match=r"models\.smollm2\.end_of_text = '<\|nope\|>'"):
        sequence_tokens(smollm2, "<|nope|>", key="models.smollm2")


def test_an_end_of_turn_eos_without_an_end_of_text_token_stops_the_stage():
    tokenizer = chatml_tokenizer(["<|im_start|>", "<|im_end|>"])
    with pytest.raises(PackingError, match=r"set models\.chat\.end_of_text"):
        sequence_tokens(tokenizer, key="models.chat")
    with_end_of_text = chatml_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokens = sequence_tokens(with_end_of_text, key="models.chat")
    assert with_end_of_text.convert_ids_to_tokens(tokens.separator) == "<|endoftext|>"
