"""The invented worlds of the offline demo (cft.data.demo_data): the syllables names are made of,
each domain's attributes with the sentences that state them and the questions that ask them,
and the pools their values are drawn from. Data only; changing any of it changes the demo's
corpora and questions."""

from __future__ import annotations

from dataclasses import dataclass

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
