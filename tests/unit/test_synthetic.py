"""The synthetic experiment: data and function classes against closed forms, the three
conditions, the alignment metric on a model with a known gradient, resume after kill -9, and the
summary against the authors' published curves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from miniature.build import synthetic_upstream
from torch import nn

from cft.synthetic import loop, reference
from cft.synthetic.data import (
    Scale,
    baseline_mse,
    build_condition,
    sample_problem,
    target,
    true_gradient,
)
from cft.synthetic.model import gradient_alignment, make_model, target_predictions
from cft.synthetic.summary import summarize

REFERENCE = REPO.parent / "shared" / "reference" / "synthetic"


TINY = Scale(
    n_dims=4,
    n_points=6,
    n_embd=16,
    n_layer=1,
    n_head=2,
    batch_size=8,
    learning_rate=1e-3,
    pretrain_steps=20,
    curriculum_start=2,
    curriculum_every=5,
    finetune_steps=60,
    eval_every=10,
    eval_batch_size=16,
    save_every=5,
)


def problem(batch=5, n=6, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (*sample_problem(gen, batch, n, d), gen)


class LinearPredictor(nn.Module):
    """Predicts u.x at every x position: its input gradient is u everywhere."""

    def __init__(self, u):
        super().__init__()
        self.u = u

    def forward(self, xs, ys, attention_mask=None):
        return xs @ self.u


class Interrupted(Exception):
    pass


def _regression_run(work_dir: Path, stop_at: int | None = None):
    """Ten steps of the shared loop on a 3-to-1 linear model; raises at ``stop_at``."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)

    def step_loss(step: int) -> torch.Tensor:
        if step == stop_at:
            raise Interrupted
        gen = torch.Generator().manual_seed(step)
        xs = torch.randn(8, 3, generator=gen)
        return ((model(xs)[:, 0] - xs.sum(1)) ** 2).mean()

    history = loop.train_resumable(
        model,
        work_dir,
        replace(TINY, learning_rate=0.05, eval_every=3, save_every=2),
        total_steps=10,
        step_loss=step_loss,
        history_row=lambda done, loss: {"loss": loss.item()},
        first_row=lambda: {"loss": None},
    )
    return model, history


def tiny_config(tmp_path) -> Path:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["synthetic"]["scales"] = {"tiny": TINY.__dict__}
    config["synthetic"]["scale"] = "tiny"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_shapes_and_function_classes_match_closed_forms():
    xs, w, v, _ = problem()
    assert xs.shape == (5, 6, 4) and w.shape == v.shape == (5, 4)
    X, W, V = xs.numpy(), w.numpy(), v.numpy()
    f = np.einsum("bnd,bd->bn", X, W)
    np.testing.assert_allclose(target("polynomial", xs, w, v), f + f**2, rtol=1e-5)
    np.testing.assert_allclose(
        target("sumdot", xs, w, v), f + np.einsum("bnd,bd->bn", X, V), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(target("relu", xs, w, v), np.maximum(f, 0), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown task 'cubic'"):
        target("cubic", xs, w, v)


@pytest.mark.parametrize("task", ["polynomial", "sumdot", "relu"])
def test_true_gradient_is_the_derivative_of_the_task(task):
    xs, w, v, _ = problem()
    x = xs[:, -1].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target(task, x[:, None], w, v).sum(), x)
    torch.testing.assert_close(true_gradient(task, xs[:, -1], w, v), grad)


def test_baseline_is_210_over_41_at_paper_size():
    assert baseline_mse(20, 41) == pytest.approx(210 / 41)


def test_conditions_build_what_they_claim():
    xs, w, v, gen = problem()
    g = target("polynomial", xs, w, v)
    f = torch.einsum("bnd,bd->bn", xs, w)
    cft = build_condition("cft", "polynomial", xs, w, v, gen)
    torch.testing.assert_close(cft.xs, torch.cat([xs, xs], 1))
    torch.testing.assert_close(cft.ys, torch.cat([f, g], 1))
    assert cft.attention_mask is None
    neg = build_condition("negcft", "polynomial", xs, w, v, gen)
    torch.testing.assert_close(neg.xs, torch.cat([xs, xs], 1))
    torch.testing.assert_close(neg.ys[:, 6:], g)
    assert not torch.allclose(neg.ys[:, :6], f)
    assert neg.ys[:, :6].std() == pytest.approx(1.0, rel=0.3)  # the authors' N(0, 1)
    matched = build_condition("negcft", "polynomial", xs, w, v, gen, neg_noise="matched")
    assert matched.ys[:, :6].std() == pytest.approx(2.0, rel=0.3)  # sqrt(d): the scale of f
    cpt = build_condition("cpt", "polynomial", xs, w, v, gen)
    assert torch.count_nonzero(cpt.xs[:, :6]) == 0 and torch.count_nonzero(cpt.ys[:, :6]) == 0
    assert cpt.attention_mask[:, :12].sum() == 0 and cpt.attention_mask[:, 12:].all()


def test_cpt_mask_really_hides_the_context():
    model = make_model(TINY, seed=0).eval()
    xs, w, v, gen = problem()
    batch = build_condition("cpt", "polynomial", xs, w, v, gen)
    before = target_predictions(model, batch)
    batch.xs[:, :6] = torch.randn(5, 6, 4)  # anything in the masked half
    batch.ys[:, :6] = torch.randn(5, 6)
    torch.testing.assert_close(target_predictions(model, batch), before)
    cft = build_condition("cft", "polynomial", xs, w, v, gen)  # unmasked context does matter
    cft_before = target_predictions(model, cft)
    cft.ys[:, :6] = torch.randn(5, 6)
    assert not torch.allclose(target_predictions(model, cft), cft_before)


@pytest.mark.parametrize("condition", ["cpt", "cft", "negcft"])
def test_alignment_on_a_model_with_a_known_gradient(condition):
    xs, w, v, gen = problem(batch=64, seed=3)
    batch = build_condition(condition, "sumdot", xs, w, v, gen)
    u = torch.tensor([1.0, -2.0, 0.5, 3.0])
    expected = nn.functional.cosine_similarity(u.expand(64, 4), w + v, dim=1).mean()
    assert gradient_alignment(LinearPredictor(u), batch, "sumdot") == pytest.approx(
        float(expected), abs=1e-6
    )
    assert gradient_alignment(LinearPredictor(w[0] + v[0]), batch, "sumdot") < 1
    one = build_condition(condition, "sumdot", xs[:1], w[:1], v[:1], gen)
    assert gradient_alignment(LinearPredictor(w[0] + v[0]), one, "sumdot") == pytest.approx(1)


def test_the_shared_loop_resumes_to_the_uninterrupted_result(tmp_path):
    model, history = _regression_run(tmp_path / "once")
    assert [row["step"] for row in history] == [0, 3, 6, 9, 10]
    with pytest.raises(Interrupted):  # dies in step 5: the checkpoint of step 4 is kept
        _regression_run(tmp_path / "twice", stop_at=5)
    saved = torch.load(tmp_path / "twice" / loop.CHECKPOINT, weights_only=False)
    assert saved["step"] == 4 and [row["step"] for row in saved["history"]] == [0, 3]
    resumed, resumed_history = _regression_run(tmp_path / "twice")
    assert resumed_history == history  # the step-0 row is not logged twice
    for ours, theirs in zip(resumed.parameters(), model.parameters(), strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the authors' curves are not available")
def test_summary_puts_the_authors_values_beside_ours(tmp_path):
    from cft.core.config import load_config

    config = load_config(tiny_config(tmp_path))
    runs = []
    for condition in ("cpt", "cft", "negcft"):
        out = tmp_path / condition
        out.mkdir()
        (out / "metrics.csv").write_text(
            "step,mse,excess_loss,alignment\n0,9,3,0.1\n49900,3,1.5,0.5\n"
        )
        (out / "summary.json").write_text(
            f'{{"task": "polynomial", "condition": "{condition}", "seed": 0, "steps": 49900,'
            f' "excess_loss": 1.5, "alignment": 0.5, "mse_by_points": [1.0]}}'
        )
        runs.append(out)
    figures = {"polynomial": (tmp_path / "fig.png", tmp_path / "fig.svg")}
    summary = summarize(
        config, "tiny", runs, REFERENCE, tmp_path / "s.json", tmp_path / "s.md", figures
    )
    authors = summary["tasks"]["polynomial"]["cft"]["authors_at_step"]
    assert authors["excess_loss"] == pytest.approx(0.0503, abs=1e-3)
    assert authors["alignment"] == pytest.approx(0.9686, abs=1e-3)
    assert summary["tasks"]["polynomial"]["cpt"]["authors_at_step"]["excess_loss"] > 100
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert "| polynomial | isotropic | cft | 1 | 49900 |" in (tmp_path / "s.md").read_text()


def test_reference_download_reads_any_url(tmp_path):
    if not REFERENCE.is_dir():
        pytest.skip("the authors' curves are not available")
    upstream = synthetic_upstream(tmp_path / "Contextual-Fine-Tuning" / "synthetic-exp")
    reference.download_reference(upstream.as_uri(), tmp_path / "ref")
    for name in reference.reference_files():
        assert (tmp_path / "ref" / name).read_bytes() == (upstream / name).read_bytes()
    with pytest.raises(RuntimeError, match="download_synthetic_reference"):
        reference.download_reference((tmp_path / "nowhere").as_uri(), tmp_path / "ref2")


def test_reference_download_needs_only_what_upstream_publishes(tmp_path):
    """Upstream's synthetic-exp/ has loss.csv and innerprod.csv (polynomial and sumdot curves)
    and a metrics.json per run (all three tasks): the download succeeds on exactly that
    layout, and the summary reads the curves and every task's final MSE from it."""
    if not REFERENCE.is_dir():
        pytest.skip("the authors' curves are not available")
    upstream = synthetic_upstream(tmp_path / "Contextual-Fine-Tuning" / "synthetic-exp")
    reference.download_reference(upstream.as_uri(), tmp_path / "ref")
    curves = reference.reference_curves(tmp_path / "ref", "polynomial")
    assert set(curves) == {"cpt", "cft", "negcft"}
    assert curves["cft"]["excess_loss"][-1] == pytest.approx(0.05, abs=0.01)
    assert reference.reference_curves(tmp_path / "ref", "relu") == {}  # no relu curves
    mse = reference.reference_mse(tmp_path / "ref", "relu")
    assert set(mse) == {"cpt", "cft", "negcft"} and len(mse["cft"]) == 41
    assert mse["cft"][0] == pytest.approx(0.000262205, rel=1e-6)  # their relu/cft, 0 points


def test_alignment_reference_gradient_is_a_switch():
    """The authors' public metric compares every task with the polynomial gradient
    (1 + 2 w.x) w; `alignment_gradient: task` compares with the task's own gradient."""
    xs, w, v, _ = problem()
    x = xs[:, -1]
    f = torch.einsum("bd,bd->b", x, w)
    torch.testing.assert_close(true_gradient("polynomial", x, w, v), (1 + 2 * f)[:, None] * w)
    torch.testing.assert_close(true_gradient("sumdot", x, w, v), w + v)

    class Exact(torch.nn.Module):  # a "model" whose last prediction is the sumdot function
        def forward(self, xs, ys, attention_mask=None):
            return torch.einsum("bnd,bd->bn", xs, w + v)

    batch = build_condition("cpt", "sumdot", xs, w, v, torch.Generator().manual_seed(0))
    own = gradient_alignment(Exact(), batch, "sumdot", reference="task")
    authors = gradient_alignment(Exact(), batch, "sumdot", reference="polynomial")
    assert own == pytest.approx(1.0, abs=1e-5) and authors < 0.9


def test_garg_curriculum_grows_points_and_dims():
    scale = Scale(
        n_dims=20,
        n_points=41,
        n_embd=8,
        n_layer=1,
        n_head=1,
        batch_size=2,
        learning_rate=1e-3,
        pretrain_steps=10,
        curriculum_start=11,
        curriculum_every=2000,
        finetune_steps=1,
        eval_every=1,
        eval_batch_size=2,
        save_every=1,
        curriculum_points_inc=2,
        curriculum_dims_start=5,
        curriculum_dims_inc=1,
    )
    assert scale.curriculum(0) == (11, 5)
    assert scale.curriculum(1999) == (11, 5) and scale.curriculum(2000) == (13, 6)
    assert scale.curriculum(30000) == (41, 20) and scale.curriculum(500000) == (41, 20)


def test_skewed_inputs_are_the_authors_transform():
    """T = U diag(1/(i+1)) Uᵀ scaled to Σλ² = d: symmetric, its eigenvalues in the ratio
    1 : 1/2 : ... : 1/d, and x = z T has covariance T² of trace d (as N(0, I))."""
    from cft.synthetic.data import skewed_transform

    d = 6
    transform = skewed_transform(d, torch.Generator().manual_seed(0))
    torch.testing.assert_close(transform, transform.T)
    eigenvalues = torch.linalg.eigvalsh(transform).flip(0)
    torch.testing.assert_close(eigenvalues / eigenvalues[0], 1 / torch.arange(1.0, d + 1))
    assert float((transform @ transform).trace()) == pytest.approx(d, rel=1e-5)
    again = skewed_transform(d, torch.Generator().manual_seed(0))
    assert torch.equal(transform, again)  # fixed by the seed


def test_a_skewed_run_draws_every_x_through_the_transform(tmp_path):
    """Per task: a skewed fine-tuning run differs from the isotropic one of the same seed, and
    a task's own step count (task_finetune_steps) replaces the scale's."""
    from cft.synthetic.stages import finetune

    scale = replace(TINY, task_finetune_steps={"sumdot": 4}, finetune_steps=2)
    pretrained = make_model(scale, 0).state_dict()
    runs = {}
    for covariance in ("isotropic", "skewed"):
        work = tmp_path / covariance
        runs[covariance] = finetune(
            scale, "sumdot", "cft", 0, pretrained, work, x_covariance=covariance
        )[1]
    assert [row["step"] for row in runs["skewed"]][-1] == 4
    assert runs["skewed"][0]["mse"] != runs["isotropic"][0]["mse"]
