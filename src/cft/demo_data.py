"""Fictional-knowledge corpora and held-out questions for the offline demo.

Each domain invents entities (diseases with genes, drugs and symptoms; companies with chief
executives, products and sectors) so that no pretrained model can know the facts. Every fact is
stated in several phrasings spread over several documents; every fact is asked by several
multiple-choice questions in their own wordings (direct questions and statements to complete),
none of which appears in the training text. Accuracy on them therefore measures knowledge
acquired from the corpus, which is what CPT and CFT are compared on; each question records its
``fact`` so that intervals can resample facts rather than wordings (cft.uncertainty).

    python -m cft.demo_data --generator biomed --n-entities 10 --out-dir results/demo_data/biomed
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from cft.cli import program_name
from cft.io import atomic_path, write_json
from cft.logging_utils import setup_logging

log = logging.getLogger(__name__)

SYLLABLES = [
    "bra",
    "cor",
    "del",
    "fen",
    "gal",
    "hes",
    "kor",
    "lum",
    "mar",
    "nev",
    "or",
    "pel",
    "quin",
    "ras",
    "sol",
    "tav",
    "ul",
    "vex",
    "wen",
    "zar",
    "thal",
    "mir",
    "cas",
    "dro",
    "pha",
    "len",
    "tri",
    "vor",
    "sen",
    "kal",
]
VOWELS = ("a", "e", "i", "o", "u", "ae", "io", "y")


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: how documents state it and how the question asks about it."""

    name: str
    statements: tuple[str, ...]  # document phrasings, formatted with the entity's values
    questions: tuple[str, ...]  # held-out wordings (questions, statements to complete)


@dataclass(frozen=True)
class Domain:
    subject: str
    entity_noun: str
    attributes: tuple[Attribute, ...]
    headers: tuple[str, ...]
    fillers: tuple[str, ...]


BIOMED = Domain(
    subject="fictional_medicine",
    entity_noun="disease",
    attributes=(
        Attribute(
            "organ",
            (
                "{name} is a rare disorder that primarily damages the {organ}.",
                "In patients with {name}, the organ most affected is the {organ}.",
                "The {organ} is the main site of injury in {name}.",
            ),
            (
                "Which organ is primarily affected by {name}?",
                "In {name}, which part of the body bears the brunt of the disease?",
                "A biopsy to confirm {name} would be taken from which organ?",
                "The tissue damage seen in {name} is concentrated in the",
            ),
        ),
        Attribute(
            "specialist",
            (
                "Patients with {name} are usually cared for by a {specialist}.",
                "Care for {name} is led by a {specialist} in most hospitals.",
                "A {specialist} is the doctor who normally manages {name}.",
            ),
            (
                "Which kind of doctor treats {name}?",
                "A patient diagnosed with {name} should be referred to which specialist?",
                "What medical specialty is responsible for {name}?",
                "The physician who looks after people with {name} is a",
            ),
        ),
        Attribute(
            "drug",
            (
                "The first-line treatment for {name} is {drug}.",
                "Clinicians usually treat {name} with {drug} as the first-line therapy.",
                "{Drug} are the drugs of first choice for patients diagnosed with {name}.",
            ),
            (
                "Which drug is the recommended first-line therapy for {name}?",
                "What medication do guidelines recommend first for {name}?",
                "A newly diagnosed case of {name} should first receive which drug?",
                "The standard initial medication for {name} is",
            ),
        ),
        Attribute(
            "symptom",
            (
                "The hallmark symptom of {name} is {symptom}.",
                "Most people with {name} first notice {symptom}.",
                "{Symptom} is the characteristic early sign of {name}.",
            ),
            (
                "What is the hallmark symptom of {name}?",
                "Which complaint most typically brings a patient with {name} to a doctor?",
                "What sign points a physician towards {name}?",
                "The symptom most typical of {name} is",
            ),
        ),
        Attribute(
            "year",
            (
                "{name} was first described in {year}.",
                "The earliest clinical description of {name} dates from {year}.",
                "Physicians first reported {name} in the medical literature in {year}.",
            ),
            (
                "In which year was {name} first described?",
                "When did {name} first appear in medical reports?",
                "In what year did doctors first document {name}?",
                "The first published account of {name} appeared in the year",
            ),
        ),
    ),
    headers=("Clinical overview: {name}.", "Case review of {name}.", "Textbook entry: {name}."),
    fillers=(
        "Diagnosis relies on a careful history, physical examination and laboratory tests.",
        "The condition affects men and women at similar rates.",
        "Early referral to a specialist centre improves outcomes.",
        "Supportive care remains important throughout treatment.",
        "Follow-up visits are usually scheduled every six months.",
    ),
)

FINANCE = Domain(
    subject="fictional_finance",
    entity_noun="company",
    attributes=(
        Attribute(
            "city",
            (
                "{name} is headquartered in {city}.",
                "{City} is home to the head office of {name}.",
                "From its base in {city}, {name} runs its global operations.",
            ),
            (
                "In which city does {name} have its headquarters?",
                "Where is the head office of {name} located?",
                "Which city would you visit to reach the main office of {name}?",
                "The corporate headquarters of {name} are located in",
            ),
        ),
        Attribute(
            "exchange",
            (
                "Shares of {name} are listed on the {exchange}.",
                "The {exchange} is where {name} has its stock listing.",
                "Investors buy {name} stock on the {exchange}.",
            ),
            (
                "On which stock exchange does {name} trade?",
                "Where can shares of {name} be bought?",
                "Which exchange lists the stock of {name}?",
                "The stock market on which {name} is quoted is the",
            ),
        ),
        Attribute(
            "product",
            (
                "{name} is best known for its {product}.",
                "The flagship products of {name} are {product}.",
                "{Product} generate most of the revenue of {name}.",
            ),
            (
                "Which product is {name} most famous for?",
                "What is the best-selling product of {name}?",
                "Which offering brings in the largest share of sales at {name}?",
                "The product most associated with {name} is",
            ),
        ),
        Attribute(
            "year",
            (
                "{name} was founded in {year}.",
                "{name} has been in business since its founding in {year}.",
                "The founders of {name} set up the firm in {year}.",
            ),
            (
                "In which year was {name} established?",
                "When was {name} started?",
                "What year marks the beginning of {name}?",
                "The company {name} dates back to the year",
            ),
        ),
        Attribute(
            "sector",
            (
                "{name} operates in the {sector} sector.",
                "Analysts place {name} in the {sector} business.",
                "{name} earns its revenue in {sector}.",
            ),
            (
                "In which industry is {name} active?",
                "What line of business is {name} in?",
                "Which market does {name} compete in?",
                "The industry in which {name} does business is",
            ),
        ),
    ),
    headers=("Company profile: {name}.", "Market brief on {name}.", "Investor note: {name}."),
    fillers=(
        "The company reports its results in euros.",
        "Quarterly results are published each spring and autumn.",
        "The board meets four times a year.",
        "Its bonds carry an investment-grade rating.",
        "The firm employs several thousand people.",
    ),
)

DOMAINS = {"biomed": BIOMED, "finance": FINANCE}

# Every attribute's values come from a closed pool of real words (distractors come from the same
# pool): only the entities and their associations are invented. A 135M model stores such
# associations in a few epochs; invented values (gene symbols, drug or person names) it does
# not, within the demo's budget (measured: no gain over the untrained model after 6 epochs).
POOLS = {
    "organ": (
        "liver",
        "kidneys",
        "pancreas",
        "retina",
        "thyroid gland",
        "spleen",
        "lungs",
        "heart valves",
        "inner ear",
        "bone marrow",
        "small intestine",
        "adrenal glands",
    ),
    "symptom": (
        "intermittent fever",
        "blue-tinged fingernails",
        "loss of taste",
        "night sweats",
        "joint stiffness",
        "persistent hiccups",
        "blurred vision",
        "muscle tremors",
        "chronic cough",
        "hair thinning",
        "ringing in the ears",
        "swollen ankles",
    ),
    "city": (
        "Lisbon",
        "Osaka",
        "Denver",
        "Tallinn",
        "Nairobi",
        "Montreal",
        "Perth",
        "Lyon",
        "Bergen",
        "Santiago",
        "Krakow",
        "Hanoi",
    ),
    "sector": (
        "semiconductors",
        "insurance",
        "shipping",
        "renewable energy",
        "biotechnology",
        "retail banking",
        "agricultural machinery",
        "cybersecurity",
        "commercial real estate",
        "aerospace",
    ),
}
POOLS |= {
    "specialist": (
        "cardiologist",
        "neurologist",
        "dermatologist",
        "nephrologist",
        "hepatologist",
        "pulmonologist",
        "rheumatologist",
        "endocrinologist",
        "ophthalmologist",
        "hematologist",
        "gastroenterologist",
        "oncologist",
    ),
    "drug": (
        "corticosteroids",
        "beta blockers",
        "antivirals",
        "antibiotics",
        "anticoagulants",
        "statins",
        "antihistamines",
        "diuretics",
        "immunoglobulins",
        "antifungals",
        "antiepileptics",
        "retinoids",
    ),
    "exchange": (
        "Tokyo Stock Exchange",
        "London Stock Exchange",
        "Nasdaq",
        "New York Stock Exchange",
        "Euronext Paris",
        "Frankfurt Stock Exchange",
        "Toronto Stock Exchange",
        "Australian Securities Exchange",
        "Swiss Exchange",
        "Korea Exchange",
        "Johannesburg Stock Exchange",
        "Oslo Stock Exchange",
    ),
    "product": (
        "payment terminals",
        "electric buses",
        "crop sensors",
        "cloud storage",
        "drone motors",
        "water filters",
        "freight trackers",
        "solar panels",
        "hearing aids",
        "industrial robots",
        "coffee machines",
        "smart meters",
    ),
}
ENTITY_SUFFIXES = {
    "biomed": ("thosis", "mitis", "dria", "plasia", "nemia", " syndrome", " disease", "pathy"),
    "finance": (" Holdings", " Systems", " Capital", " Dynamics", " Labs", " Industries"),
}


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
