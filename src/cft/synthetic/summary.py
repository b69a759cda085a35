"""The synthetic experiment's summary: final excess loss and alignment per (task, condition)
over seeds beside the authors' values, and one figure per task."""

from __future__ import annotations

import json
from pathlib import Path

from cft.core.io import atomic_path, write_json
from cft.core.methods import CFT, CPT, NEGCFT
from cft.core.plotting import pyplot, save_figure
from cft.core.settings import stage_provenance, stage_settings
from cft.synthetic import CONDITIONS
from cft.synthetic.reference import reference_curves, reference_mse


def condition_stats(
    runs: list[dict], theirs: dict | None, steps: int, their_mse: list[float] | None = None
) -> dict:
    """Mean, std, min and max over seeds of the final excess loss and alignment, and the
    authors' last value at or before ``steps`` of each (None without their curves); the final
    MSE averaged over the in-context positions, ours over seeds and the authors' from their
    run's metrics.json (None without it)."""
    import numpy as np

    stats = {}
    ours_mse = [float(np.mean(r["mse_by_points"])) for r in runs]
    stats["mse_over_points"] = {
        "mean": float(np.mean(ours_mse)),
        "std": float(np.std(ours_mse)),
        "authors": float(np.mean(their_mse)) if their_mse else None,
    }
    for metric in ("excess_loss", "alignment"):
        values = np.array([r[metric] for r in runs])
        stats[metric] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "seeds": [r["seed"] for r in runs],
        }
    at_step = None
    if theirs:
        at_step = {}
        for metric in ("excess_loss", "alignment"):
            pairs = zip(theirs[f"{metric}_step"], theirs[metric], strict=True)
            known = [(s, v) for s, v in pairs if s <= steps]
            at_step[metric] = known[-1][1] if known else None
            at_step[f"{metric}_step"] = known[-1][0] if known else None
    stats["authors_at_step"] = at_step
    return stats


def summarize(
    config: dict,
    scale_name: str,
    run_dirs: list[Path],
    reference_dir: Path | None,
    out_json: Path,
    out_md: Path,
    figures: dict[str, tuple[Path, Path]],
) -> dict:
    """Final excess loss and alignment per (task, condition): mean, std, min and max over
    seeds, beside the authors' values at the same step when given; one figure per task, at
    ``figures[task]`` = (png, svg)."""

    runs = [json.loads((Path(d) / "summary.json").read_text()) for d in run_dirs]
    table: dict = {}
    for run in runs:
        table.setdefault(run["task"], {}).setdefault(run["condition"], []).append(run)
    summary: dict = {"scale": scale_name, "tasks": {}}
    lines = [f"## Synthetic experiment ({scale_name} scale)", ""]
    lines.append(
        "| task | inputs | condition | seeds | steps | excess loss mean ± std [min, max] "
        "| alignment mean ± std [min, max] | authors at the same step "
        "| final MSE over positions: ours, authors |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    unplaced = sorted(set(table) - set(figures))
    if unplaced:
        raise ValueError(f"runs of tasks {unplaced} but no figure paths for them")
    for task, by_condition in sorted(table.items()):
        reference = reference_curves(reference_dir, task)
        their_mse = reference_mse(reference_dir, task)
        summary["tasks"][task] = {}
        for condition in CONDITIONS:
            runs_c = by_condition.get(condition, [])
            if not runs_c:
                continue
            steps = runs_c[0]["steps"]
            stats = condition_stats(
                runs_c, reference.get(condition), steps, their_mse.get(condition)
            )
            stats["x_covariance"] = runs_c[0].get("x_covariance", "isotropic")
            at_step = stats["authors_at_step"]
            summary["tasks"][task][condition] = stats
            el, al = stats["excess_loss"], stats["alignment"]
            authors = "—"
            if at_step and None not in (at_step["excess_loss"], at_step["alignment"]):
                authors = (
                    f"{at_step['excess_loss']:.3g} / {at_step['alignment']:.2f} "
                    f"(step {at_step['excess_loss_step']})"
                )
            mse = stats["mse_over_points"]
            their = "—" if mse["authors"] is None else f"{mse['authors']:.3g}"
            lines.append(
                f"| {task} | {stats['x_covariance']} | {condition} | {len(runs_c)} | {steps} | "
                f"{el['mean']:.3g} ± {el['std']:.2g} [{el['min']:.3g}, {el['max']:.3g}] | "
                f"{al['mean']:.3f} ± {al['std']:.2g} [{al['min']:.3f}, {al['max']:.3f}] | "
                f"{authors} | {mse['mean']:.3g} ± {mse['std']:.2g}, {their} |"
            )
        curve_figure(
            task,
            [Path(d) for d in run_dirs],
            runs,
            reference,
            *figures[task],
        )
    lines += [
        "",
        "Excess loss: target-half MSE over the linear baseline sum_k max(d-k,0)/n; "
        "alignment: cosine of the input gradient of the last prediction with the true "
        "gradient. Authors' values: their published curves (loss.csv, innerprod.csv) at "
        "the same step, when given; their final MSE: the mean over in-context positions of "
        "their run's metrics.json (setting standard), after their full fine-tuning. Inputs: "
        "isotropic N(0, I) or skewed (synthetic.x_covariance).",
    ]
    summary["provenance"] = stage_provenance(
        "synthetic_summary", stage_settings(config, "synthetic_summary", scale=scale_name)
    )
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

    styles = {CPT.name: "--", CFT.name: "-", NEGCFT.name: ":"}
    labels = {CPT.name: "CPT", CFT.name: "CFT", NEGCFT.name: "NEG-CFT"}
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
