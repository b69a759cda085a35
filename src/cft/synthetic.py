"""The paper's synthetic experiment: in-context regression transformers fine-tuned with CPT, CFT
and NEG-CFT on composed function classes (after Garg et al. 2022 and the CFT authors' code).

A GPT-2 backbone with a linear read-in (R^d -> n_embd) and read-out (n_embd -> 1) reads the
sequence x_1, y_1, x_2, y_2, ... (each y written in the first coordinate of a d-vector) and
predicts y_k at the position of x_k.

1. Pretraining: linear functions f(x) = w.x, w, x ~ N(0, I_d), with a curriculum on the number
   of points (and optionally of active dimensions, as Garg et al.).
2. Fine-tuning on g, a composition with f: polynomial g = f + f^2, sumdot g = f + v.x, relu
   g = max(0, f). Every example draws w (and v) and n points x_1..x_n, and is shown under one
   of three conditions, the target half always being (x_i, g(x_i)):
   - ``cft``: the n linear pairs (x_i, f(x_i)) precede the n target pairs;
   - ``cpt`` (the authors' "uft"): the context half is zeroed and masked out of attention;
   - ``negcft``: the context pairs carry Gaussian noise instead of f(x_i): N(0, 1) as the
     authors (``neg_noise: unit``) or of f's variance d (``matched``).
   Loss and predictions are on the target half only.
3. Metrics every ``eval_every`` steps on a fixed evaluation batch: excess loss (target-half MSE
   over the linear-regression baseline sum_k max(d - k, 0) / n, i.e. 210/41 for d = 20,
   n = 41) and gradient alignment (cosine between the input gradient of the last prediction and
   the true direction grad g(x), e.g. (1 + 2 w.x) w for the polynomial), and after training the
   MSE by number of in-context examples.

Checkpoints every ``save_every`` steps; a killed run resumes from the last one. Batches are
drawn from a generator seeded by (seed, step), so a resumed run sees the same data.

    python -m cft.synthetic pretrain --scale demo --seed 0 --out-dir results/synthetic/demo/...
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cft.io import atomic_path, write_json
from cft.logging_utils import setup_logging
from cft.plotting import pyplot, save_figure
from cft.provenance import provenance

log = logging.getLogger(__name__)

TASKS = ("polynomial", "sumdot", "relu")
CONDITIONS = ("cpt", "cft", "negcft")
CHECKPOINT = "checkpoint.pt"


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


# ---- data -------------------------------------------------------------------------------------


def generator_for(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def sample_problem(gen: torch.Generator, batch: int, n_points: int, n_dims: int):
    """w, v ~ N(0, I_d) per example, x_1..x_n ~ N(0, I_d)."""
    w = torch.randn(batch, n_dims, generator=gen)
    v = torch.randn(batch, n_dims, generator=gen)
    xs = torch.randn(batch, n_points, n_dims, generator=gen)
    return xs, w, v


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
    if condition == "cft":
        context_x, context_y, mask = shown, linear(shown, w), None
    elif condition == "negcft":
        noise = torch.randn(batch, n, generator=gen) * NEG_NOISE_STD[neg_noise](d)
        context_x, context_y, mask = shown, noise, None
    elif condition == "cpt":
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
        context_repeats_x=condition != "cpt" and context_xs is None,
    )


# ---- model ------------------------------------------------------------------------------------


class InContextRegressor(nn.Module):
    """GPT-2 backbone with linear read-in and read-out, predicting y at every x position."""

    def __init__(self, n_dims: int, n_positions: int, n_embd: int, n_layer: int, n_head: int):
        from transformers import GPT2Config, GPT2Model

        super().__init__()
        config = GPT2Config(
            n_positions=n_positions,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            use_cache=False,
        )
        self.n_dims = n_dims
        self.read_in = nn.Linear(n_dims, n_embd)
        self.backbone = GPT2Model(config)
        self.read_out = nn.Linear(n_embd, 1)

    @staticmethod
    def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        batch, n, d = xs.shape
        ys_wide = torch.cat([ys[..., None], xs.new_zeros(batch, n, d - 1)], dim=2)
        return torch.stack((xs, ys_wide), dim=2).reshape(batch, 2 * n, d)

    def forward(self, xs, ys, attention_mask=None):
        embeds = self.read_in(self.interleave(xs, ys))
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask)
        return self.read_out(hidden.last_hidden_state)[:, ::2, 0]  # predictions at the x's


def make_model(scale: Scale, seed: int) -> InContextRegressor:
    torch.manual_seed(seed)
    # positions: 2 tokens per point, context plus target half when fine-tuning
    return InContextRegressor(
        scale.n_dims, 4 * scale.n_points, scale.n_embd, scale.n_layer, scale.n_head
    )


# ---- metrics ----------------------------------------------------------------------------------


def target_predictions(model, batch: Batch):
    return model(batch.xs, batch.ys, batch.attention_mask)[:, batch.n_context :]


def gradient_alignment(model, batch: Batch, task: str, reference: str = "task") -> float:
    """Mean cosine between d(last prediction)/d(last x) and the true gradient of g there.

    The x's are one input: where the context repeats them (CFT, NEG-CFT), the derivative
    counts both places the last x appears, as for a model fed the x's once."""
    query = batch.xs[:, batch.n_context :].clone().requires_grad_(True)
    context = query if batch.context_repeats_x else batch.xs[:, : batch.n_context]
    preds = model(torch.cat([context, query], dim=1), batch.ys, batch.attention_mask)
    (grad,) = torch.autograd.grad(preds[:, -1].sum(), query)
    # reference "polynomial": the authors' public metric, (1 + 2 w.x) w whatever the task.
    true = true_gradient(
        task if reference == "task" else "polynomial", batch.xs[:, -1], batch.w, batch.v
    )
    return float(nn.functional.cosine_similarity(grad[:, -1], true, dim=1).mean())


def evaluate(model, batch: Batch, task: str, scale: Scale, reference: str = "task") -> dict:
    model.eval()
    with torch.no_grad():
        errors = (target_predictions(model, batch) - batch.ys[:, batch.n_context :]) ** 2
    alignment = gradient_alignment(model, batch, task, reference)
    model.train()
    mse = float(errors.mean())
    return {
        "mse": mse,
        "excess_loss": mse / baseline_mse(scale.n_dims, scale.n_points),
        "alignment": alignment,
        "mse_by_points": errors.mean(dim=0).tolist(),
    }


# ---- training loops with checkpoints ----------------------------------------------------------


def _load_checkpoint(out_dir: Path, model, optimizer) -> tuple[int, list[dict]]:
    path = out_dir / CHECKPOINT
    if not path.is_file():
        return 0, []
    state = torch.load(path, weights_only=False, map_location=device_of())
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming %s at step %d", out_dir, state["step"])
    return state["step"], state["history"]


def _save_checkpoint(out_dir: Path, model, optimizer, step: int, history: list[dict]) -> None:
    with atomic_path(out_dir / CHECKPOINT) as tmp:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "history": history,
            },
            tmp,
        )


def device_of() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pretrain(scale: Scale, seed: int, work_dir: Path) -> tuple[InContextRegressor, list[dict]]:
    """Linear regression with the points curriculum; resumable in ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    device = device_of()
    model = make_model(scale, seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=scale.learning_rate)
    step, history = _load_checkpoint(work_dir, model, optimizer)
    while step < scale.pretrain_steps:
        points, dims = scale.curriculum(step)
        xs, w, _ = sample_problem(generator_for(seed, step), scale.batch_size, points, scale.n_dims)
        xs[..., dims:] = 0  # dims curriculum: only the first `dims` coordinates are active
        xs, ys = xs.to(device), linear(xs, w).to(device)
        loss = ((model(xs, ys) - ys) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % scale.eval_every == 0 or step == scale.pretrain_steps:
            history.append({"step": step, "points": points, "loss": loss.item()})
        if step % scale.save_every == 0 and step < scale.pretrain_steps:
            _save_checkpoint(work_dir, model, optimizer, step, history)
    _save_checkpoint(work_dir, model, optimizer, step, history)
    return model, history


def finetune(
    scale: Scale,
    task: str,
    condition: str,
    seed: int,
    pretrained: dict,
    work_dir: Path,
    context: str = "same",
    neg_noise: str = "unit",
    alignment_gradient: str = "task",
):
    """Fine-tune the pretrained model under one condition; resumable in ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    device = device_of()
    model = make_model(scale, seed)
    model.load_state_dict(pretrained)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=scale.learning_rate)
    step, history = _load_checkpoint(work_dir, model, optimizer)
    eval_gen = generator_for(seed + 7919, 0)  # one fixed evaluation batch per seed

    def draw(gen, size):
        xs, w, v = sample_problem(gen, size, scale.n_points, scale.n_dims)
        context_xs = torch.randn(xs.shape, generator=gen) if context == "fresh" else None
        return build_condition(condition, task, xs, w, v, gen, context_xs, neg_noise=neg_noise).to(
            device
        )

    eval_batch = draw(eval_gen, scale.eval_batch_size)
    if step == 0:
        history.append({"step": 0, **evaluate(model, eval_batch, task, scale, alignment_gradient)})
    while step < scale.finetune_steps:
        gen = generator_for(seed, 10**7 + step)
        batch = draw(gen, scale.batch_size)
        loss = ((target_predictions(model, batch) - batch.ys[:, batch.n_context :]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % scale.eval_every == 0 or step == scale.finetune_steps:
            history.append(
                {"step": step, **evaluate(model, eval_batch, task, scale, alignment_gradient)}
            )
        if step % scale.save_every == 0 and step < scale.finetune_steps:
            _save_checkpoint(work_dir, model, optimizer, step, history)
    _save_checkpoint(work_dir, model, optimizer, step, history)
    return model, history


# ---- stages -----------------------------------------------------------------------------------


def scale_of(config: dict, name: str) -> Scale:
    return Scale(**config["synthetic"]["scales"][name])


def run_pretrain(config: dict, scale_name: str, seed: int, out_dir: Path, work_dir: Path) -> None:
    scale = scale_of(config, scale_name)
    start = time.perf_counter()
    model, history = pretrain(scale, seed, work_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        torch.save(model.state_dict(), tmp / "model.pt")
        write_json(
            tmp / "metrics.json",
            {
                "scale": scale_name,
                "seed": seed,
                "history": history,
                "seconds": time.perf_counter() - start,
                "provenance": provenance(config["synthetic"]["scales"][scale_name], seed=seed),
            },
        )
    shutil.rmtree(work_dir, ignore_errors=True)  # the resume state; the result is published


def run_finetune(
    config: dict,
    scale_name: str,
    task: str,
    condition: str,
    seed: int,
    *,
    pretrained: Path,
    out_dir: Path,
    work_dir: Path,
) -> None:
    scale = scale_of(config, scale_name)
    start = time.perf_counter()
    state = torch.load(Path(pretrained) / "model.pt", weights_only=True, map_location="cpu")
    settings = config["synthetic"]
    _, history = finetune(
        scale,
        task,
        condition,
        seed,
        state,
        work_dir,
        scale.context_points or settings["context_points"],
        neg_noise=settings["neg_noise"],
        alignment_gradient=settings["alignment_gradient"],
    )
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        with (tmp / "metrics.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "mse", "excess_loss", "alignment"])
            for row in history:
                writer.writerow([row["step"], row["mse"], row["excess_loss"], row["alignment"]])
        final = history[-1]
        write_json(
            tmp / "summary.json",
            {
                "scale": scale_name,
                "task": task,
                "condition": condition,
                "seed": seed,
                "steps": final["step"],
                "excess_loss": final["excess_loss"],
                "alignment": final["alignment"],
                "mse_by_points": final["mse_by_points"],
                "seconds": time.perf_counter() - start,
                "provenance": provenance(config["synthetic"]["scales"][scale_name], seed=seed),
            },
        )
    shutil.rmtree(work_dir, ignore_errors=True)  # the resume state; the result is published


# ---- the authors' curves and the summary ------------------------------------------------------

# What the authors publish as CSV under synthetic-exp/ (their MSE-by-points numbers are only in
# per-run metrics.json files, which the summary does not need).
REFERENCE_FILES = ("loss.csv", "innerprod.csv")
# Their condition names in the column headers: {task}_{name}.
REFERENCE_NAMES = {"cpt": "uft", "cft": "cft", "negcft": "neg-cft"}


def download_reference(base_url: str, out_dir: Path) -> None:
    """Fetch the authors' published curves (a networked node; any URL urllib can open)."""
    import urllib.request

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in REFERENCE_FILES:
            url = f"{base_url.rstrip('/')}/{name}"
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    (tmp / name).write_bytes(response.read())
            except OSError as err:
                raise RuntimeError(
                    f"could not fetch {url} ({err}); run `snakemake download_synthetic_reference`"
                    f" where the network is, or set synthetic.reference to a local copy"
                ) from err


def reference_curves(reference_dir: Path | None, task: str) -> dict[str, dict]:
    """{condition: {"step", "excess_loss", "alignment"}} from the authors' loss.csv and
    innerprod.csv (columns like ``polynomial_cft_noskewed - excess_loss``; empty cells
    dropped)."""
    import pandas as pd

    if reference_dir is None:
        return {}
    files = {"excess_loss": "loss.csv", "alignment": "innerprod.csv"}
    tables = {metric: pd.read_csv(Path(reference_dir) / name) for metric, name in files.items()}
    curves: dict[str, dict] = {}
    for condition, name in REFERENCE_NAMES.items():
        curve = {}
        for metric, table in tables.items():
            matches = [c for c in table.columns if c.startswith(f"{task}_{name}_")]
            if not matches:
                break
            series = table[["Step", matches[0]]].dropna()
            curve["step"] = series["Step"].astype(int).tolist()
            curve[metric] = series[matches[0]].astype(float).tolist()
            curve[f"{metric}_step"] = curve["step"]
        if len(curve) == 5:
            curves[condition] = curve
    return curves


def summarize(
    config: dict,
    scale_name: str,
    run_dirs: list[Path],
    reference_dir: Path | None,
    out_json: Path,
    out_md: Path,
    figure_prefix: Path,
) -> dict:
    """Final excess loss and alignment per (task, condition): mean, std, min and max over
    seeds, beside the authors' values at the same step when given; one figure per task."""
    import numpy as np

    runs = [json.loads((Path(d) / "summary.json").read_text()) for d in run_dirs]
    table: dict = {}
    for run in runs:
        table.setdefault(run["task"], {}).setdefault(run["condition"], []).append(run)
    summary: dict = {"scale": scale_name, "tasks": {}}
    lines = [f"## Synthetic experiment ({scale_name} scale)", ""]
    lines.append(
        "| task | condition | seeds | steps | excess loss mean ± std [min, max] "
        "| alignment mean ± std [min, max] | authors at the same step |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for task, by_condition in sorted(table.items()):
        reference = reference_curves(reference_dir, task)
        summary["tasks"][task] = {}
        for condition in CONDITIONS:
            runs_c = by_condition.get(condition, [])
            if not runs_c:
                continue
            stats = {}
            for metric in ("excess_loss", "alignment"):
                values = np.array([r[metric] for r in runs_c])
                stats[metric] = {
                    "mean": float(values.mean()),
                    "std": float(values.std()),
                    "min": float(values.min()),
                    "max": float(values.max()),
                    "seeds": [r["seed"] for r in runs_c],
                }
            steps = runs_c[0]["steps"]
            theirs = reference.get(condition)
            at_step = None
            if theirs:  # their last value at or before our final step, per metric
                at_step = {}
                for metric in ("excess_loss", "alignment"):
                    known = [
                        (s, v)
                        for s, v in zip(theirs[f"{metric}_step"], theirs[metric], strict=True)
                        if s <= steps
                    ]
                    at_step[metric] = known[-1][1] if known else None
                    at_step[f"{metric}_step"] = known[-1][0] if known else None
            stats["authors_at_step"] = at_step
            summary["tasks"][task][condition] = stats
            el, al = stats["excess_loss"], stats["alignment"]
            authors = "—"
            if at_step and None not in (at_step["excess_loss"], at_step["alignment"]):
                authors = (
                    f"{at_step['excess_loss']:.3g} / {at_step['alignment']:.2f} "
                    f"(step {at_step['excess_loss_step']})"
                )
            lines.append(
                f"| {task} | {condition} | {len(runs_c)} | {steps} | {el['mean']:.3g} ± "
                f"{el['std']:.2g} [{el['min']:.3g}, {el['max']:.3g}] | {al['mean']:.3f} ± "
                f"{al['std']:.2g} [{al['min']:.3f}, {al['max']:.3f}] | {authors} |"
            )
        curve_figure(
            task,
            [Path(d) for d in run_dirs],
            runs,
            reference,
            Path(f"{figure_prefix}_{task}.png"),
            Path(f"{figure_prefix}_{task}.svg"),
        )
    lines += [
        "",
        "Excess loss: target-half MSE over the linear baseline sum_k max(d-k,0)/n; "
        "alignment: cosine of the input gradient of the last prediction with the true "
        "gradient. Authors' values: their published curves (loss.csv, innerprod.csv) at "
        "the same step, when given.",
    ]
    summary["provenance"] = provenance(config["synthetic"], seed=None)
    write_json(out_json, summary)
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return summary


def curve_figure(task, run_dirs, runs, reference, png: Path, svg: Path) -> None:
    """Excess loss (log scale) and alignment over steps: ours (mean over seeds, band min-max)
    and the authors' published curves, one line style per condition (black and white)."""
    plt = pyplot()
    import numpy as np
    import pandas as pd

    styles = {"cpt": "--", "cft": "-", "negcft": ":"}
    labels = {"cpt": "CPT", "cft": "CFT", "negcft": "NEG-CFT"}
    columns = 2 if reference else 1
    fig, axes = plt.subplots(2, columns, figsize=(5.5 * columns, 6.5), squeeze=False)
    for condition in CONDITIONS:
        curves = [
            pd.read_csv(d / "metrics.csv")
            for d, r in zip(run_dirs, runs, strict=True)
            if r["task"] == task and r["condition"] == condition
        ]
        if not curves:
            continue
        steps = curves[0]["step"]
        for row, metric in enumerate(("excess_loss", "alignment")):
            values = np.stack([c[metric].to_numpy() for c in curves])
            ax = axes[row][0]
            ax.plot(
                steps,
                values.mean(0),
                styles[condition],
                color="black",
                label=f"{labels[condition]} (mean of {len(curves)} seeds)",
            )
            ax.fill_between(steps, values.min(0), values.max(0), color="0.85")
        if condition in reference:
            theirs = reference[condition]
            for row, metric in enumerate(("excess_loss", "alignment")):
                axes[row][1].plot(
                    theirs[f"{metric}_step"],
                    theirs[metric],
                    styles[condition],
                    color="black",
                    label=labels[condition],
                )
    titles = ["ours", "authors (published curves)"]
    for col in range(columns):
        axes[0][col].set_yscale("log")
        axes[0][col].set_ylabel("excess loss")
        axes[1][col].set_ylabel("gradient alignment")
        axes[1][col].set_xlabel("fine-tuning step")
        axes[0][col].set_title(f"{task}: {titles[col]}")
        for row in range(2):
            axes[row][col].grid(color="0.9", linewidth=0.5)
            axes[row][col].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, svg)


def main(argv: list[str] | None = None) -> None:
    from cft.cli import stage_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["pretrain", "finetune"])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--scale", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=TASKS, default="polynomial")
    parser.add_argument("--condition", choices=CONDITIONS, default="cft")
    parser.add_argument("--pretrained", help="a pretrain output folder (finetune)")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    out = Path(args.out_dir)
    work = out.parent / f".{out.name}.work"
    if args.stage == "pretrain":
        run_pretrain(config, args.scale, args.seed, out, work)
    else:
        run_finetune(
            config,
            args.scale,
            args.task,
            args.condition,
            args.seed,
            pretrained=Path(args.pretrained),
            out_dir=out,
            work_dir=work,
        )


if __name__ == "__main__":
    main()
