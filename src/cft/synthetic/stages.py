"""Pretraining (linear regression with the curriculum) and fine-tuning (one task under one
condition), each a resumable run published as one folder."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import torch

from cft.core.io import atomic_path, write_json
from cft.core.settings import stage_provenance, stage_settings
from cft.synthetic.data import (
    Scale,
    build_condition,
    generator_for,
    linear,
    sample_problem,
    skewed_transform,
)
from cft.synthetic.loop import device_of, train_resumable
from cft.synthetic.model import InContextRegressor, evaluate, make_model, target_predictions

# Fine-tuning batches are drawn from generator_for(seed, FINETUNE_STREAM + step), apart from
# pretraining's; the evaluation batch from generator_for(seed + EVAL_SEED_OFFSET, 0).
FINETUNE_STREAM = 10**7
EVAL_SEED_OFFSET = 7919
COVARIANCE_SEED_OFFSET = 104729  # the skewed runs' input transform


def pretrain(scale: Scale, seed: int, work_dir: Path) -> tuple[InContextRegressor, list[dict]]:
    """Linear regression with the points (and dims) curriculum; resumable in ``work_dir``."""
    device = device_of()
    model = make_model(scale, seed).to(device)

    def step_loss(step: int) -> torch.Tensor:
        points, dims = scale.curriculum(step)
        xs, w, _ = sample_problem(generator_for(seed, step), scale.batch_size, points, scale.n_dims)
        xs[..., dims:] = 0  # dims curriculum: only the first `dims` coordinates are active
        xs, ys = xs.to(device), linear(xs, w).to(device)
        return ((model(xs, ys) - ys) ** 2).mean()

    history = train_resumable(
        model,
        work_dir,
        scale,
        total_steps=scale.pretrain_steps,
        step_loss=step_loss,
        history_row=lambda done, loss: {
            "points": scale.curriculum(done - 1)[0],
            "loss": loss.item(),
        },
    )
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
    x_covariance: str = "isotropic",
):
    """Fine-tune the pretrained model under one condition; resumable in ``work_dir``. With
    ``x_covariance: skewed`` every x of the run (training and evaluation batches) is drawn
    through one :func:`skewed_transform`, fixed by the seed."""
    device = device_of()
    model = make_model(scale, seed)
    model.load_state_dict(pretrained)
    model.to(device)
    transform = None
    if x_covariance == "skewed":
        transform = skewed_transform(scale.n_dims, generator_for(seed + COVARIANCE_SEED_OFFSET, 0))

    def draw(gen, size):
        xs, w, v = sample_problem(gen, size, scale.n_points, scale.n_dims)
        context_xs = torch.randn(xs.shape, generator=gen) if context == "fresh" else None
        if transform is not None:
            xs = xs @ transform
            context_xs = None if context_xs is None else context_xs @ transform
        return build_condition(condition, task, xs, w, v, gen, context_xs, neg_noise=neg_noise).to(
            device
        )

    eval_batch = draw(generator_for(seed + EVAL_SEED_OFFSET, 0), scale.eval_batch_size)

    def step_loss(step: int) -> torch.Tensor:
        batch = draw(generator_for(seed, FINETUNE_STREAM + step), scale.batch_size)
        return ((target_predictions(model, batch) - batch.ys[:, batch.n_context :]) ** 2).mean()

    def metrics() -> dict:
        return evaluate(model, eval_batch, task, scale, alignment_gradient)

    history = train_resumable(
        model,
        work_dir,
        scale,
        total_steps=scale.steps_of(task),
        step_loss=step_loss,
        history_row=lambda done, loss: metrics(),
        first_row=metrics,
    )
    return model, history


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
                "provenance": stage_provenance(
                    "synthetic_pretrain",
                    stage_settings(config, "synthetic_pretrain", scale=scale_name),
                    seed=seed,
                ),
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
        x_covariance=settings["x_covariance"].get(task, "isotropic"),
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
                "x_covariance": settings["x_covariance"].get(task, "isotropic"),
                "excess_loss": final["excess_loss"],
                "alignment": final["alignment"],
                "mse_by_points": final["mse_by_points"],
                "seconds": time.perf_counter() - start,
                "provenance": stage_provenance(
                    "synthetic_finetune",
                    stage_settings(config, "synthetic_finetune", scale=scale_name, task=task),
                    seed=seed,
                ),
            },
        )
    shutil.rmtree(work_dir, ignore_errors=True)  # the resume state; the result is published
