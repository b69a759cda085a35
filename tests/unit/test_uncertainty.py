"""Interval arithmetic of cft.tables.uncertainty on known inputs (not on any demo outcome)."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from cft.tables.uncertainty import (
    Bootstrap,
    Outcomes,
    SamplesError,
    estimate,
    paired_estimate,
    read_outcomes,
    statistic,
)


def acc_outcomes(correct, margins=None) -> Outcomes:
    correct = np.asarray(correct, dtype=float)
    return Outcomes("acc", np.arange(len(correct)), correct, margins)


def test_weighted_f1_matches_scikit_learn_on_every_replicate():
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    pred[:25] = gold[:25]
    values = np.stack([gold, pred], axis=1).astype(float)
    index = rng.integers(0, 60, size=(50, 60))
    weights = np.stack([np.bincount(i, minlength=60) for i in index]).astype(float)
    ours = statistic("weighted_f1", values, weights)
    theirs = [f1_score(gold[i], pred[i], average="weighted") for i in index]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_accuracy_interval_matches_the_binomial_normal_approximation():
    # 400 questions, 200 right: the 95% interval is 0.5 ± 1.96·sqrt(0.25/400) = ±0.049.
    outcomes = acc_outcomes([1, 0] * 200)
    result = estimate(Bootstrap(iters=4000, seed=1), "row", {"task": [outcomes]})
    assert result.value == 0.5
    assert result.half_width == pytest.approx(0.049, abs=0.004)
    assert result.low < 0.5 < result.high


def test_questions_of_one_fact_are_resampled_together():
    # 100 facts asked in 4 identical wordings each: the evidence is 100 answers, not 400, so
    # the cluster bootstrap gives the interval of 100 questions (twice as wide).
    per_fact = np.array([1, 0] * 50, dtype=float)
    answers = np.repeat(per_fact, 4)
    clusters = np.repeat(np.arange(100), 4)
    grouped = Outcomes("acc", np.arange(400), answers, None, clusters)
    alone = Outcomes("acc", np.arange(400), answers)
    facts_only = Outcomes("acc", np.arange(100), per_fact)
    widths = {
        name: estimate(Bootstrap(iters=4000, seed=6, resample="facts"), "r", {"t": [o]}).half_width
        for name, o in (("grouped", grouped), ("alone", alone), ("facts", facts_only))
    }
    assert widths["grouped"] == pytest.approx(widths["facts"], rel=0.1)
    assert widths["grouped"] == pytest.approx(2 * widths["alone"], rel=0.15)
    # resampling questions ignores the facts
    by_question = estimate(Bootstrap(iters=4000, seed=6), "r", {"t": [grouped]}).half_width
    assert by_question == pytest.approx(widths["alone"], rel=0.1)


def test_a_constant_row_has_a_degenerate_interval():
    result = estimate(Bootstrap(iters=500), "row", {"task": [acc_outcomes([1] * 30)]})
    assert (result.value, result.low, result.high) == (1.0, 1.0, 1.0)


def test_paired_difference_is_exact_where_rows_differ_on_known_questions():
    # B is A with 20 of its 200 right answers turned wrong: A - B = +0.10 on every resample
    # that keeps those questions' share, and never negative.
    a = np.ones(200)
    b = a.copy()
    b[:20] = 0
    boot = Bootstrap(iters=3000, seed=2)
    diff = paired_estimate(boot, "A", {"t": [acc_outcomes(a)]}, "B", {"t": [acc_outcomes(b)]})
    assert diff.value == pytest.approx(0.10)
    assert diff.low > 0.05 and diff.high < 0.15
    # The binomial half-width of a 10% share of 200 questions: 1.96·sqrt(0.09/200) = 0.042.
    assert diff.half_width == pytest.approx(0.042, abs=0.006)


def test_pairing_removes_the_shared_question_variance():
    rng = np.random.default_rng(3)
    hard = rng.random(300) < 0.5  # questions both rows get wrong more often
    a = np.where(hard, rng.random(300) < 0.3, rng.random(300) < 0.9).astype(float)
    b = a.copy()
    flips = rng.choice(300, 15, replace=False)
    b[flips] = 0
    boot = Bootstrap(iters=2000, seed=4)
    paired = paired_estimate(boot, "a", {"t": [acc_outcomes(a)]}, "b", {"t": [acc_outcomes(b)]})
    unpaired_a = estimate(boot, "a", {"t": [acc_outcomes(a)]})
    unpaired_b = estimate(boot, "b", {"t": [acc_outcomes(b)]})
    assert paired.half_width < 0.5 * (unpaired_a.half_width + unpaired_b.half_width) / 2


def test_seeds_widen_the_interval_when_runs_disagree_and_not_when_they_agree():
    run = acc_outcomes(np.tile([1, 1, 0, 1], 50))
    other = acc_outcomes(np.tile([0, 0, 0, 1], 50))
    one = estimate(Bootstrap(iters=2000, seed=5), "r", {"t": [run]})
    same = estimate(Bootstrap(iters=2000, seed=5), "r", {"t": [run, run]})
    apart = estimate(Bootstrap(iters=2000, seed=5), "r", {"t": [run, other]})
    assert same.value == one.value and same.half_width == pytest.approx(one.half_width, rel=0.2)
    assert apart.value == pytest.approx((0.75 + 0.25) / 2)
    # Resampling two seeds that score 0.75 and 0.25 puts a quarter of the replicates at each.
    assert apart.low < 0.3 and apart.high > 0.7


def test_average_column_averages_tasks_and_their_replicates():
    cells = {"t1": [acc_outcomes([1] * 40)], "t2": [acc_outcomes([0] * 10)]}
    result = estimate(Bootstrap(iters=200), "r", cells)
    assert (result.value, result.low, result.high) == (0.5, 0.5, 0.5)


def test_margins_are_read_from_lm_eval_samples(tmp_path):
    path = tmp_path / "task.samples.jsonl"
    samples = [
        # doc 1: correct option 2 at -1.0, best distractor -3.0 -> margin +2.0
        {
            "doc_id": 1,
            "doc": {"fact": "b"},
            "target": 2,
            "acc": 1.0,
            "filtered_resps": [["-4.0", "False"], [-3.0, False], [-1.0, True]],
        },
        # doc 0: correct option 0 at -5.0, best distractor -2.5 -> margin -2.5
        {
            "doc_id": 0,
            "doc": {"fact": "a"},
            "target": 0,
            "acc": 0.0,
            "filtered_resps": [[-5.0, False], [-2.5, True]],
        },
    ]
    path.write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    outcomes = read_outcomes(path, "acc")
    assert outcomes.doc_ids.tolist() == [0, 1]
    assert outcomes.values.tolist() == [0.0, 1.0]
    assert outcomes.margins.tolist() == [-2.5, 2.0]
    assert outcomes.clusters.tolist() == [0, 1]  # the documents' facts, in doc_id order


def test_unreadable_samples_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.samples.jsonl"
    path.write_text('{"doc_id": 0, "acc": 1.0}\n{"doc_id": 1}\n')
    with pytest.raises(SamplesError, match=r"bad.samples.jsonl:2: .*'acc'"):
        read_outcomes(path, "acc")


def test_pairing_refuses_rows_scored_on_different_questions():
    boot = Bootstrap(iters=10)
    with pytest.raises(SamplesError, match="different questions"):
        paired_estimate(
            boot, "a", {"t": [acc_outcomes([1] * 5)]}, "b", {"t": [acc_outcomes([1] * 4)]}
        )
