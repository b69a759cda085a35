"""FinBen scoring under PIXIU/FinBen's generative protocol: the parse rule on hand-made
outputs, and the aggregations (the task's and the tables' bootstrap statistic) against
scikit-learn with FinBen's labels."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from cft.evaluation.task_folders import TASKS_DIR
from cft.tables.uncertainty import PAIR_METRICS, statistic

spec = importlib.util.spec_from_file_location("finben_utils", TASKS_DIR / "finben" / "utils.py")
utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(utils)

SENTIMENT = ["positive", "negative", "neutral"]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("  Negative.\n", "negative"),  # stripped and lower-cased
        ("NEUTRAL", "neutral"),
        # two choices in one output: the first in the choices' order wins, not the first in
        # the text
        ("It is negative, not positive.", "positive"),
        ("neutral to negative", "negative"),
        # a choice inside another word still counts (substring match)
        ("nonpositive outlook", "positive"),
        # nothing matched: missing, which is wrong whatever the gold
        ("I cannot say.", None),
        ("", None),
    ],
)
def test_the_first_listed_choice_found_in_the_output_is_the_answer(output, expected):
    index = utils.parse_choice(output, SENTIMENT)
    assert index == (utils.MISSING if expected is None else SENTIMENT.index(expected))


def test_a_choice_contained_in_another_follows_list_order():
    # Causal20's labels: "causal" is inside "noncausal"; the list order decides
    assert utils.parse_choice("noncausal", ["noise", "causal"]) == 1
    assert utils.parse_choice("Noise (no causal link)", ["noise", "causal"]) == 0


def test_process_generation_scores_a_missing_answer_as_wrong():
    doc = {"choices": SENTIMENT, "gold": 2}
    scored = utils.process_generation(doc, ["no idea"])
    assert scored["acc"] == 0.0 and scored["missing"] == 1.0
    assert scored["mcc"] == (2, utils.MISSING)
    right = utils.process_generation(doc, ["Neutral."])
    assert right["acc"] == 1.0 and right["missing"] == 0.0 and right["weighted_f1"] == (2, 2)


def pixiu_pairs(seed: int, n: int = 80):
    """Gold among 3 labels (label 3 never gold), predictions among 4 labels and missing."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    pred = rng.choice([0, 1, 2, 3, utils.MISSING], n)
    pred[: n // 3] = gold[: n // 3]
    return gold, pred


def sklearn_as_finben(metric: str, gold, pred) -> float:
    """PIXIU's aggregations: F1 over the gold labels only; MCC with every prediction that is
    not a gold label pooled as one class."""
    labels = sorted(set(gold))
    if metric == "mcc":
        return matthews_corrcoef(gold, [p if p in labels else -1 for p in pred])
    average = metric.removesuffix("_f1")
    return f1_score(gold, pred, average=average, labels=labels)


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_the_task_aggregations_are_finbens(metric):
    gold, pred = pixiu_pairs(0)
    pairs = list(zip(gold.tolist(), pred.tolist(), strict=True))
    assert getattr(utils, metric)(pairs) == pytest.approx(sklearn_as_finben(metric, gold, pred))


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_the_bootstrap_statistic_equals_the_aggregation_on_every_resample(metric):
    """The tables' vectorised statistic on resample weights equals the task's aggregation on
    the resampled questions, including resamples where a gold label is absent."""
    gold, pred = pixiu_pairs(1, n=30)
    values = np.stack([gold, pred], axis=1).astype(float)
    rng = np.random.default_rng(2)
    index = rng.integers(0, 30, size=(40, 30))
    index[0] = np.flatnonzero(gold != 0)[rng.integers(0, (gold != 0).sum(), 30)]  # no label 0
    weights = np.stack([np.bincount(i, minlength=30) for i in index]).astype(float)
    ours = statistic(metric, values, weights)
    theirs = [sklearn_as_finben(metric, gold[i], pred[i]) for i in index]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


# ---- PIXIU's own rule, beside the project's ---------------------------------------------------


def pixiu_answer(output: str, choices: list[str]) -> str:
    """PIXIU's ``Classification.process_results`` parse, restated from its behaviour
    (The-FinAI/PIXIU src/tasks/flare.py): the stripped, lower-cased output; the first
    lower-cased choice in list order that it contains; else the string "missing"."""
    text = output.strip().lower()
    return next((c.lower() for c in choices if c.lower() in text), "missing")


def pixiu_metrics(answers: list[str], golds: list[str]) -> dict[str, float]:
    """PIXIU's aggregations over (answer, gold) strings: F1 over the gold labels, MCC with
    every answer that is no gold label mapped to one class, the missing rate."""
    labels = list(set(golds))
    index = {label: i for i, label in enumerate(labels)}
    return {
        "acc": float(np.mean([a == g for a, g in zip(answers, golds, strict=True)])),
        "weighted_f1": f1_score(golds, answers, average="weighted", labels=labels),
        "macro_f1": f1_score(golds, answers, average="macro", labels=labels),
        "mcc": matthews_corrcoef([index[g] for g in golds], [index.get(a, -1) for a in answers]),
        "missing": float(np.mean([a == "missing" for a in answers])),
    }


SETS = {
    "fiqasa": ["negative", "positive", "neutral"],
    "causal20": ["noise", "causal"],
    "multifin": ["Finance", "Technology", "Tax & Accounting", "Business & Management",
                 "Government & Controls", "Industry"],
}  # fmt: skip


def hard_outputs(choices: list[str], rng) -> list[str]:
    """Outputs of every hard kind: case, a choice inside another word, two choices in either
    order, none, empty, the prompt echoed back, a preamble before a blank line, padding."""
    one, two = rng.choice(choices, 2, replace=False)
    echoed = f"Classify the text as {', '.join(choices)}.\nText: ...\nAnswer:"
    return [
        one, one.upper(), f"  {one.title()}.\n", f"non{one}", f"{one}ish",
        f"{one} or {two}", f"{two}, not {one}", "I cannot tell.", "", "   \n",
        echoed, f"Let me think.\n\n{one}", f"{two}\n\nThis is not {one}.",
        f"The answer: **{one.upper()}**", rng.choice(choices) + rng.choice(choices),
    ]  # fmt: skip


@pytest.mark.parametrize("name", sorted(SETS))
def test_the_parse_and_the_aggregations_agree_with_pixius_rule_on_hard_cases(name):
    choices = SETS[name]
    rng = np.random.default_rng(len(name))
    outputs, golds = [], []
    for _ in range(60):
        for output in hard_outputs(choices, rng):
            outputs.append(output)
            # the last label is never gold: an answer naming it is pooled with "missing" (MCC)
            golds.append(int(rng.integers(len(choices) - 1)))
    pairs = []
    for output, gold in zip(outputs, golds, strict=True):
        ours = utils.process_generation({"choices": choices, "gold": gold}, [output])
        pairs.append(ours["mcc"])
        pred = ours["mcc"][1]
        theirs = pixiu_answer(output, choices)
        assert (choices[pred].lower() if pred != utils.MISSING else "missing") == theirs, output
    answers = [pixiu_answer(o, choices) for o in outputs]
    expected = pixiu_metrics(answers, [choices[g].lower() for g in golds])
    ours = {metric: getattr(utils, metric)(pairs) for metric in ("weighted_f1", "macro_f1", "mcc")}
    ours["acc"] = float(np.mean([g == p for g, p in pairs]))
    ours["missing"] = float(np.mean([p == utils.MISSING for _, p in pairs]))
    assert expected["missing"] > 0 and 0 < expected["acc"] < 1
    for metric, value in expected.items():
        assert ours[metric] == pytest.approx(value, abs=1e-12), metric
