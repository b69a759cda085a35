"""Function classes, problems and the three fine-tuning conditions of the synthetic experiment."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from cft.core.methods import CFT, CPT, NEGCFT
from cft.synthetic import CONDITIONS, TASKS


@dataclass(frozen=True)
class Scale:
    n_dims: int
    n_points: int
    n_embd: int
    n_layer: int
    n_head: int
    batch_size: int
    learning_rate: float
    pretrain_steps: int
    curriculum_start: int  # points at step 0 of pretraining
    curriculum_every: int  # the curriculum moves on every this many steps
    finetune_steps: int
    eval_every: int
    eval_batch_size: int
    save_every: int
    curriculum_points_inc: int = 1  # points added at each curriculum move (Garg et al.: 2)
    curriculum_dims_start: int | None = None  # active dims at step 0 (Garg et al.: 5); None: all
    curriculum_dims_inc: int = 1  # dims added at each curriculum move
    context_points: str | None = None  # this scale's synthetic.context_points, if it differs
    # fine-tuning steps of the tasks that train longer than finetune_steps (the authors' relu)
    task_finetune_steps: dict = field(default_factory=dict)

    def steps_of(self, task: str) -> int:
        return self.task_finetune_steps.get(task, self.finetune_steps)

    def curriculum(self, step: int) -> tuple[int, int]:
        """(points, active dims) of pretraining at ``step``: Garg et al.'s curriculum, which
        grows both; inactive dims of x are zero."""
        moves = step // self.curriculum_every
        points = min(self.curriculum_start + moves * self.curriculum_points_inc, self.n_points)
        if self.curriculum_dims_start is None:
            return points, self.n_dims
        dims = min(self.curriculum_dims_start + moves * self.curriculum_dims_inc, self.n_dims)
        return points, dims


def baseline_mse(n_dims: int, n_points: int) -> float:
    """Mean error over n positions of the best predictor of a noiseless linear function with
    k earlier points: d - k unseen directions, each of variance 1 (210/41 for d=20, n=41)."""
    return sum(max(n_dims - k, 0) for k in range(n_points)) / n_points


def generator_for(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def sample_problem(gen: torch.Generator, batch: int, n_points: int, n_dims: int):
    """w, v ~ N(0, I_d) per example, x_1..x_n ~ N(0, I_d)."""
    w = torch.randn(batch, n_dims, generator=gen)
    v = torch.randn(batch, n_dims, generator=gen)
    xs = torch.randn(batch, n_points, n_dims, generator=gen)
    return xs, w, v


X_COVARIANCES = ("isotropic", "skewed")


def skewed_transform(n_dims: int, gen: torch.Generator) -> torch.Tensor:
    """The authors' ``skewed`` inputs (synthetic-exp ``eval.py`` with ``samplers.py``'s
    ``sample_transformation(normalize=True)``): x = z T for z ~ N(0, I_d), T = U diag(λ) Uᵀ
    with λ_i = 1/(i+1), U the left singular vectors of a Gaussian matrix, scaled so that
    Σ λ² = d (the covariance T² then has trace d, as the identity's)."""
    eigenvalues = 1 / torch.arange(1, n_dims + 1, dtype=torch.float32)
    basis, _, _ = torch.linalg.svd(torch.randn(n_dims, n_dims, generator=gen))
    transform = basis @ torch.diag(eigenvalues) @ basis.T
    return transform * math.sqrt(n_dims / float((eigenvalues**2).sum()))


def linear(xs, w):
    return torch.einsum("bnd,bd->bn", xs, w)


def target(task: str, xs, w, v):
    f = linear(xs, w)
    if task == "polynomial":
        return f + f**2
    if task == "sumdot":
        return f + linear(xs, v)
    if task == "relu":
        return torch.relu(f)
    raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")


def true_gradient(task: str, x, w, v):
    """d g / d x at points x (batch, d). (The authors' public metric uses the polynomial's
    gradient for every task: see ``alignment_gradient``.)"""
    f = torch.einsum("bd,bd->b", x, w)
    if task == "polynomial":
        return (1 + 2 * f)[:, None] * w
    if task == "sumdot":
        return w + v
    if task == "relu":
        return (f > 0).float()[:, None] * w
    raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")


@dataclass
class Batch:
    xs: torch.Tensor  # (b, 2n, d): context x's then target x's
    ys: torch.Tensor  # (b, 2n)
    attention_mask: torch.Tensor | None  # (b, 4n) over interleaved tokens, or None
    n_context: int  # points before the target half
    w: torch.Tensor
    v: torch.Tensor
    context_repeats_x: bool  # the context half holds the same x's as the target half

    def to(self, device) -> Batch:
        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        return Batch(
            self.xs.to(device),
            self.ys.to(device),
            mask,
            self.n_context,
            self.w.to(device),
            self.v.to(device),
            self.context_repeats_x,
        )


NEG_NOISE_STD = {
    "unit": lambda d: 1.0,  # the authors' code: N(0, 1)
    "matched": lambda d: math.sqrt(d),  # the variance of f(x) = w.x, d
}


def build_condition(
    condition: str,
    task: str,
    xs,
    w,
    v,
    gen: torch.Generator,
    context_xs=None,
    neg_noise: str = "unit",
) -> Batch:
    """The fine-tuning input of one condition (see the module docstring). The context pairs
    sit on the target x's, or on ``context_xs`` (other points of the same w) when given.
    NEG-CFT's context y's are N(0, 1) (``neg_noise: unit``, the authors') or of f's variance
    d (``matched``)."""
    g = target(task, xs, w, v)
    batch, n, d = xs.shape
    shown = xs if context_xs is None else context_xs
    if condition == CFT.name:
        context_x, context_y, mask = shown, linear(shown, w), None
    elif condition == NEGCFT.name:
        noise = torch.randn(batch, n, generator=gen) * NEG_NOISE_STD[neg_noise](d)
        context_x, context_y, mask = shown, noise, None
    elif condition == CPT.name:
        context_x, context_y = torch.zeros_like(xs), torch.zeros(batch, n)
        mask = torch.ones(batch, 4 * n, dtype=torch.long)
        mask[:, : 2 * n] = 0  # the context tokens are invisible to attention
    else:
        raise ValueError(f"unknown condition {condition!r}; expected one of {list(CONDITIONS)}")
    return Batch(
        xs=torch.cat([context_x, xs], dim=1),
        ys=torch.cat([context_y, g], dim=1),
        attention_mask=mask,
        n_context=n,
        w=w,
        v=v,
        context_repeats_x=condition != CPT.name and context_xs is None,
    )
