"""TextAdaptCFT prompt generation: post-processing of realistic bad outputs, fallbacks counted,
and resume after a killed run (the tiny random Llama), and one shard of the packaged model."""

from __future__ import annotations

import pandas as pd
import pytest

from cft.packing.autogen import COPY_CHARS, clean_generated, shares_run

DOC = (
    "Casatavi disease is a rare disorder that primarily damages the small intestine. "
    "Mutations in MPP2 are the underlying cause of Casatavi disease."
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            'Sure! Here is a contextual prompt:\n\n"Consider how genetic causes shape rare '
            'intestinal diseases."',
            "Consider how genetic causes shape rare intestinal diseases.",
        ),
        (
            "**Contextual Prompt:** Focus on how a single gene can explain a whole disease.",
            "Focus on how a single gene can explain a whole disease.",
        ),
        (
            "Here's a concise prompt for the reader: “Ask what links genes to organs.”",
            "Ask what links genes to organs.",
        ),
        ("Prompt: Think about   treatment\n choices.", "Think about treatment choices."),
        (  # a reasoning model's thinking goes before the prompt (Qwen3 left thinking)
            "<think>\nOkay, the user wants a prompt about a rare disease. Let me see.\n</think>"
            "\n\nAsk how one gene can explain a whole disease.",
            "Ask how one gene can explain a whole disease.",
        ),
    ],
)
def test_wrappers_are_stripped(raw, expected):
    prompt, reason, truncated = clean_generated(raw, DOC, min_chars=10, max_chars=400)
    assert (prompt, reason, truncated) == (expected, None, False)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ('Sure, here is the prompt: ""', "empty"),
        ("Text:", "empty"),
        ("Read it.", "too_short"),
        # a reply that ran out of tokens while reasoning, and a thinking block alone
        ("<think> Okay, the user wants a prompt that makes the reader think about", "reasoning"),
        ("<think>The text is about a disease.</think>", "reasoning"),
        ("I'm sorry, but I cannot help with medical content.", "refusal"),
        ("As an AI language model, I will summarise this text for you in detail.", "refusal"),
        (
            "Casatavi disease is a rare disorder that primarily damages the small intestine.",
            "copied_text",
        ),
    ],
)
def test_unusable_outputs_fall_back(raw, reason):
    prompt, got, _ = clean_generated(raw, DOC, min_chars=15, max_chars=400)
    assert prompt is None and got == reason


def test_long_output_is_cut_at_a_sentence():
    raw = "Think about the causes of each disease. " * 30
    prompt, reason, truncated = clean_generated(raw, DOC, min_chars=10, max_chars=100)
    assert truncated and reason is None
    assert len(prompt) <= 100 and prompt.endswith(".")


@pytest.mark.parametrize("seed", range(40))
def test_shared_run_check_agrees_with_the_longest_common_substring(seed):
    """The linear-time check against difflib's exact longest match, on strings built to have
    shared runs just below, at and above the threshold (a two-letter alphabet adds chance
    matches and repeated windows)."""
    import difflib
    import random

    rng = random.Random(seed)

    def noise(n):
        return "".join(rng.choice("ab") for _ in range(n))

    run = noise(rng.choice([COPY_CHARS - 1, COPY_CHARS, COPY_CHARS + 1, 2 * COPY_CHARS]))
    text = noise(rng.randint(0, 90)) + "X" + run + "Y" + noise(rng.randint(0, 90))
    source = noise(rng.randint(0, 300)) + "Z" + run + "W" + noise(rng.randint(0, 300))
    for a, b in ((text, source), (noise(200), noise(400)), (run, run)):
        longest = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match().size
        assert shares_run(a, b) == (longest >= COPY_CHARS), (seed, longest)


def test_a_copy_of_text_the_generator_never_saw_is_not_a_copy():
    """The stage passes only the document's first max_input_chars, as build_inputs shows them."""
    tail = "The trial enrolled forty patients across three hospitals and measured them weekly."
    assert clean_generated(tail, DOC + " " + tail, min_chars=10, max_chars=400)[1] == "copied_text"
    assert clean_generated(tail, DOC, min_chars=10, max_chars=400)[1] is None


def test_shards_are_keyed_by_the_settings_that_made_them(tmp_path, demo_config):
    """A changed meta-prompt setting, temperature or token budget starts new shards (and drops
    the old ones); the same settings find the same folder again."""
    from cft.core.config import validate_config
    from cft.core.fingerprints import PROVENANCE_FILE
    from cft.core.io import write_json
    from cft.packing.autogen import shards_folder

    validate_config(demo_config)
    docs = pd.DataFrame({"doc_id": ["a", "b"], "split": "train", "text": ["one", "two"]})
    out = tmp_path / "autogen.parquet"
    model, other_model = tmp_path / "generator", tmp_path / "other"
    for folder in (model, other_model):  # what the base_model stage records (the files' digest)
        folder.mkdir()
        write_json(folder / PROVENANCE_FILE, {"fingerprint": f"files of {folder.name}"})
    first = shards_folder(demo_config, "finance", out, docs, model)
    (first / "shard-00000.parquet").write_bytes(b"made with the first settings")
    assert shards_folder(demo_config, "finance", out, docs, model) == first
    assert (first / "shard-00000.parquet").exists()
    for key, value in (("temperature", 0.3), ("max_new_tokens", 7)):
        changed = {**demo_config, "autogen": {**demo_config["autogen"], key: value}}
        other = shards_folder(changed, "finance", out, docs, model)
        assert other != first and not first.exists() and not any(other.iterdir())
        first = shards_folder(demo_config, "finance", out, docs, model)
    # other documents, or another generator, are other shards too
    assert shards_folder(demo_config, "finance", out, docs.iloc[:1], model) != first
    assert shards_folder(demo_config, "finance", out, docs, other_model) != first
