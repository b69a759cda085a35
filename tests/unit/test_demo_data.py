"""The fictional-knowledge demo corpora: deterministic, each fact stated several ways, and
questions held out from the training text."""

from __future__ import annotations

import json

import pytest

from cft.data.demo_data import DOMAINS, _fill, generate, run


@pytest.mark.parametrize("generator", sorted(DOMAINS))
def test_generation_is_deterministic(generator):
    assert generate(generator, 8, 3, seed=5) == generate(generator, 8, 3, seed=5)
    assert generate(generator, 8, 3, seed=5) != generate(generator, 8, 3, seed=6)


@pytest.mark.parametrize("generator", sorted(DOMAINS))
def test_questions_are_well_formed_and_held_out(generator):
    documents, questions = generate(generator, 10, 3, seed=1)
    domain = DOMAINS[generator]
    assert len(documents) == 30
    assert len(questions) == 10 * len(domain.attributes) * 4  # four wordings per fact
    facts = {q["fact"] for q in questions}
    assert len(facts) == 10 * len(domain.attributes)
    for fact in facts:  # each wording of a fact is its own question
        assert len({q["question"] for q in questions if q["fact"] == fact}) == 4
    corpus = "\n".join(d["text"] for d in documents)
    for q in questions:
        assert len(q["choices"]) == 4 == len(set(q["choices"]))
        assert 0 <= q["answer"] < 4
        assert q["subject"] == domain.subject
        # the question's wording never appears in the training text
        assert q["question"] not in corpus
        assert q["question"].rstrip("?") not in corpus
        # the right answer is stated in the entity's documents; distractors are not its facts
        own_docs = [d["text"] for d in documents if d["entity"] == q["entity"]]
        correct = q["choices"][q["answer"]]
        assert all(correct.lower() in doc.lower() for doc in own_docs)


@pytest.mark.parametrize("generator", sorted(DOMAINS))
def test_each_fact_is_stated_in_several_phrasings(generator):
    documents, questions = generate(generator, 6, 3, seed=2)
    domain = DOMAINS[generator]
    for q in questions:
        attr = next(a for a in domain.attributes if a.name == q["attribute"])
        values = {"name": q["entity"], attr.name: q["choices"][q["answer"]]}
        own_docs = [d["text"] for d in documents if d["entity"] == q["entity"]]
        used = [t for t in attr.statements if any(_fill(t, values) in doc for doc in own_docs)]
        # three documents per entity: each states the fact in a different phrasing
        assert len(used) == 3, (q["entity"], attr.name)


def test_answer_positions_are_balanced():
    _, questions = generate("biomed", 40, 1, seed=3)
    counts = [sum(q["answer"] == i for q in questions) for i in range(4)]
    assert min(counts) >= len(questions) / 4 * 0.5  # no position is a giveaway


def test_run_writes_files(tmp_path):
    run("finance", 5, 2, 7, tmp_path)
    docs = [json.loads(x) for x in (tmp_path / "documents.jsonl").read_text().splitlines()]
    questions = [json.loads(x) for x in (tmp_path / "questions.jsonl").read_text().splitlines()]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(docs) == manifest["documents"] == 10
    assert len(questions) == manifest["questions"] == 25 * 4
    assert set(questions[0]) >= {"question", "subject", "choices", "answer"}  # MMLU columns


def test_unknown_generator():
    with pytest.raises(ValueError, match="unknown demo generator 'law'"):
        generate("law", 5, 1, 0)
