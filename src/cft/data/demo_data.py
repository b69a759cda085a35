"""Fictional-knowledge corpora and held-out questions for the offline demo.

Each domain invents entities (diseases with genes, drugs and symptoms; companies with chief
executives, products and sectors) so that no pretrained model can know the facts. Every fact is
stated in several phrasings spread over several documents; every fact is asked by several
multiple-choice questions in their own wordings (direct questions and statements to complete),
none of which appears in the training text. Accuracy on them therefore measures knowledge
acquired from the corpus, which is what CPT and CFT are compared on; each question records its
``fact`` so that intervals can resample facts rather than wordings (cft.tables.uncertainty).

    python -m cft.data.demo_data --generator biomed --n-entities 10 \
        --out-dir results/demo_data/biomed
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

from cft.core.cli import program_name
from cft.core.io import atomic_path, write_json
from cft.core.logging_utils import setup_logging
from cft.data.demo_vocabulary import (
    DOMAINS,
    ENTITY_SUFFIXES,
    POOLS,
    SYLLABLES,
    VOWELS,
    Domain,
)

log = logging.getLogger(__name__)


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) + rng.choice(VOWELS) for _ in range(parts))


def _unique(rng: random.Random, make, taken: set[str]) -> str:
    for _ in range(1000):
        value = make()
        if value not in taken:
            taken.add(value)
            return value
    raise RuntimeError("could not draw a unique invented name; lower n_entities")


def _entities(generator: str, n: int, rng: random.Random) -> list[dict]:
    taken: set[str] = set()
    entities = []
    for _ in range(n):
        name = _unique(
            rng,
            lambda: _word(rng, 2).capitalize() + rng.choice(ENTITY_SUFFIXES[generator]),
            taken,
        )
        if generator == "biomed":
            values = {
                "organ": rng.choice(POOLS["organ"]),
                "specialist": rng.choice(POOLS["specialist"]),
                "drug": rng.choice(POOLS["drug"]),
                "symptom": rng.choice(POOLS["symptom"]),
                "year": str(rng.randint(1890, 2012)),
            }
        else:
            values = {
                "city": rng.choice(POOLS["city"]),
                "exchange": rng.choice(POOLS["exchange"]),
                "product": rng.choice(POOLS["product"]),
                "year": str(rng.randint(1950, 2015)),
                "sector": rng.choice(POOLS["sector"]),
            }
        entities.append({"name": name, **values})
    return entities


def _fill(template: str, entity: dict) -> str:
    """Format a template; a capitalised placeholder ({Drug}) capitalises the value."""
    fields = dict(entity)
    fields.update({k.capitalize(): v[:1].upper() + v[1:] for k, v in entity.items()})
    return template.format(**fields)


def _documents(domain: Domain, entities: list[dict], per_entity: int, rng: random.Random):
    """``per_entity`` documents per entity, each stating every fact in another phrasing, with
    one filler sentence; sentence order is shuffled."""
    for e_idx, entity in enumerate(entities):
        for d_idx in range(per_entity):
            sentences = [
                _fill(attr.statements[(d_idx + a_idx) % len(attr.statements)], entity)
                for a_idx, attr in enumerate(domain.attributes)
            ]
            sentences += rng.sample(domain.fillers, 1)
            rng.shuffle(sentences)
            header = _fill(domain.headers[d_idx % len(domain.headers)], entity)
            yield {
                "doc_id": f"{domain.subject}/{e_idx:03d}/{d_idx}",
                "entity": entity["name"],
                "text": header + "\n\n" + " ".join(sentences),
            }


def _questions(domain: Domain, entities: list[dict], per_fact: int, rng: random.Random):
    """``per_fact`` questions per fact, each in its own wording with its own distractors and
    option order."""
    for entity in entities:
        for attr in domain.attributes:
            correct = entity[attr.name]
            pool = {e[attr.name] for e in entities} | set(POOLS.get(attr.name, ()))
            if attr.name == "year":  # entities may share a year: add nearby ones
                pool |= {str(int(correct) + d) for d in (-9, -4, 5, 13)}
            for wording in attr.questions[:per_fact]:
                distractors = rng.sample(sorted(pool - {correct}), 3)
                choices = [*distractors, correct]
                rng.shuffle(choices)
                yield {
                    "question": _fill(wording, entity),
                    "subject": domain.subject,
                    "choices": choices,
                    "answer": choices.index(correct),
                    "entity": entity["name"],
                    "attribute": attr.name,
                    "fact": f"{entity['name']}/{attr.name}",
                }


QUESTIONS_PER_FACT = 4  # wordings written per attribute (Attribute.questions)


def generate(
    generator: str,
    n_entities: int,
    documents_per_entity: int,
    seed: int,
    questions_per_fact: int = QUESTIONS_PER_FACT,
) -> tuple[list[dict], list[dict]]:
    """Return (documents, questions) for a demo domain; the same arguments give the same data."""
    if generator not in DOMAINS:
        raise ValueError(f"unknown demo generator {generator!r}; expected one of {list(DOMAINS)}")
    if not 1 <= questions_per_fact <= QUESTIONS_PER_FACT:
        raise ValueError(
            f"questions_per_fact must be 1 to {QUESTIONS_PER_FACT} (the wordings written per "
            f"fact), not {questions_per_fact}"
        )
    domain = DOMAINS[generator]
    rng = random.Random(f"{generator}:{seed}")
    entities = _entities(generator, n_entities, rng)
    documents = list(_documents(domain, entities, documents_per_entity, rng))
    questions = list(_questions(domain, entities, questions_per_fact, rng))
    return documents, questions


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def run(
    generator: str,
    n_entities: int,
    documents_per_entity: int,
    seed: int,
    out_dir,
    questions_per_fact: int = QUESTIONS_PER_FACT,
) -> None:
    out_dir = Path(out_dir)
    documents, questions = generate(
        generator, n_entities, documents_per_entity, seed, questions_per_fact
    )
    write_jsonl(out_dir / "documents.jsonl", documents)
    write_jsonl(out_dir / "questions.jsonl", questions)
    write_json(
        out_dir / "manifest.json",
        {
            "generator": generator,
            "n_entities": n_entities,
            "documents_per_entity": documents_per_entity,
            "questions_per_fact": questions_per_fact,
            "seed": seed,
            "documents": len(documents),
            "questions": len(questions),
        },
    )
    log.info("%s: %d documents, %d questions", generator, len(documents), len(questions))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=program_name(), description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", choices=sorted(DOMAINS), required=True)
    parser.add_argument("--n-entities", type=int, default=10)
    parser.add_argument("--documents-per-entity", type=int, default=3)
    parser.add_argument("--questions-per-fact", type=int, default=QUESTIONS_PER_FACT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    run(
        args.generator,
        args.n_entities,
        args.documents_per_entity,
        args.seed,
        args.out_dir,
        args.questions_per_fact,
    )


if __name__ == "__main__":
    main()
