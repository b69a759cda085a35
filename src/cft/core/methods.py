"""The methods the paper compares, in one place: each method's name (in configs, paths and
records), its row label, the prompt file that conditions it and whether it trains. Every
other module asks this registry instead of spelling a method's name
(``tests/unit/test_methods.py`` greps for strays).

Prompt kinds are the keys of the config's ``prompts`` section: the prompt files a method
draws from (``cft``: the learning strategies; ``negative``: the -CFT set; ``autogen``: the
meta-prompt of the generated prompts, which condition TextAdaptCFT through a table)."""

from __future__ import annotations

from dataclasses import dataclass

CFT_PROMPTS = "cft"  # the learning-strategy prompt file (also the generator's fallbacks)
NEGATIVE_PROMPTS = "negative"
AUTOGEN_PROMPTS = "autogen"
# Prompt kinds whose file lists the prompts themselves (drawn per block or per document).
FIXED_PROMPT_KINDS = (CFT_PROMPTS, NEGATIVE_PROMPTS)


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # the table row and figure legend
    prompts: str | None  # the prompt kind that conditions it; None: the text alone
    trains: bool

    @property
    def generated_prompts(self) -> bool:
        """Conditioned by prompts an LLM wrote for each document (the autogen stage's table)."""
        return self.prompts == AUTOGEN_PROMPTS

    @property
    def fixed_prompts(self) -> bool:
        """Conditioned by prompts drawn from a prompt file's list."""
        return self.prompts in FIXED_PROMPT_KINDS


CHAT = Method("chat", "Chat", None, trains=False)  # the base model itself
CPT = Method("cpt", "Chat (CPT)", None, trains=True)
CFT = Method("cft", "Chat (CFT)", CFT_PROMPTS, trains=True)
NEGCFT = Method("negcft", "Chat (-CFT)", NEGATIVE_PROMPTS, trains=True)
AUTOCFT = Method("autocft", "Chat (TextAdaptCFT)", AUTOGEN_PROMPTS, trains=True)

METHODS = {m.name: m for m in (CHAT, CPT, CFT, NEGCFT, AUTOCFT)}
UNTRAINED = CHAT.name  # the method whose row is the base model (and every external baseline)
# The rows every table row is paired with: the continued-pretraining baseline and the model
# before training.
REFERENCE_METHODS = (CPT.name, CHAT.name)

# The synthetic experiment's vocabulary (cft.synthetic implements it): its function classes,
# and its fine-tuning conditions, the LLM methods' analogues named as they are. Here, in the
# core, so that the config check reads them without importing a stage.
SYNTHETIC_TASKS = ("polynomial", "sumdot", "relu")
SYNTHETIC_CONDITIONS = (CPT.name, CFT.name, NEGCFT.name)


def method(name: str) -> Method:
    """The registry entry of ``name``; KeyError naming the known methods."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; the methods are {list(METHODS)}") from None


def label(name: str) -> str:
    """A method's row label; an unknown name (an external row) labels itself."""
    return METHODS[name].label if name in METHODS else name
