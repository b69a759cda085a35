"""The figures: each table's bar chart (ours with intervals beside the paper's values), the
training-loss curves per method, and the knowledge-acquisition curves
(cft.evaluation.knowledge_curve).
Readable in black and white: hatches, line styles and markers, not colours, tell the rows apart."""

from __future__ import annotations

from pathlib import Path

from cft.core.grid import MISSING, task_label
from cft.core.io import read_json
from cft.core.methods import label
from cft.core.plotting import pyplot, save_figure
from cft.tables.model import Table


def bar_chart(table: Table, png: Path, svg: Path) -> None:
    """Grouped bars per column: ours (solid, hatched per row) and the paper's (outlined); the
    columns in bits per byte (the held-out text) in a panel of their own."""
    plt = pyplot()

    columns = table.columns()
    panels = [
        [c for c in columns if not table.lower_is_better(c)],
        [c for c in columns if table.lower_is_better(c)],
    ]
    panels = [p for p in panels if p]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(max(6, 1.6 * len(columns) + 2), 4.2),
        gridspec_kw={"width_ratios": [len(p) + 0.5 for p in panels]},
        squeeze=False,
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        _bars(ax, table, panel)
    versus = ": ours (bars) vs paper (lines)" if table.has_paper else " (the paper has no values)"
    fig.suptitle(f"{table.domain} / {table.model}{versus}")
    axes[0][0].legend(fontsize=8, ncols=2, frameon=False)
    fig.tight_layout()
    save_figure(fig, png, svg)


def _bars(ax, table: Table, columns: list[str]) -> None:
    hatches = ["", "//", "\\\\", "xx", "..", "--", "++", "oo"]
    greys = ["0.15", "0.35", "0.55", "0.75", "0.9", "0.45", "0.65", "0.25"]
    ratio = table.lower_is_better(columns[0])
    n_rows = len(table.rows)
    width = 0.8 / max(n_rows, 1)
    for i, row in enumerate(table.rows):
        xs = [c + (i - (n_rows - 1) / 2) * width for c in range(len(columns))]
        ours = [table.value(table.ours, row.label, c) for c in columns]
        bars = ax.bar(
            xs,
            [v if v is not None else 0 for v in ours],
            width,
            label=row.label,
            color=greys[i % len(greys)],
            hatch=hatches[i % len(hatches)],
            edgecolor="black",
            linewidth=0.6,
        )
        intervals = [table.intervals.get((row.label, c)) for c in columns]
        has = [
            (x, v, e) for x, v, e in zip(xs, ours, intervals, strict=True) if e and v is not None
        ]
        if has:
            ax.errorbar(
                [x for x, _, _ in has],
                [v for _, v, _ in has],
                yerr=[[v - e.low for _, v, e in has], [e.high - v for _, v, e in has]],
                fmt="none",
                ecolor="black",
                elinewidth=0.8,
                capsize=2,
            )
        ax.bar_label(
            bars,
            labels=[f"{v:.{table.digits(c)}f}" if v is not None else MISSING
                    for v, c in zip(ours, columns, strict=True)],
            fontsize=6,
            padding=1,
            rotation=90,
        )  # fmt: skip
        paper = [table.value(table.paper, row.label, c) for c in columns]
        for x, value in zip(xs, paper, strict=True):
            if value is not None:
                ax.plot([x - width / 2, x + width / 2], [value, value], color="black", lw=2)
    if table.has_paper and not ratio:
        ax.plot([], [], color="black", lw=2, label="paper's value")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([task_label(c) for c in columns], rotation=20, ha="right")
    if ratio:  # the held-out text: not a paper metric, no fixed range
        ax.set_ylabel("bits per byte (lower is better), 95% interval")
        top = max((v for (_, c), v in table.ours.items() if c in columns), default=1.0)
        ax.set_ylim(0, 1.15 * top)
    else:
        ax.set_ylabel("score (%), 95% interval")
        ax.set_ylim(0, 100)
    ax.grid(axis="y", color="0.85", linewidth=0.5)
    ax.set_axisbelow(True)


def loss_figure(curves: dict[str, Path], title: str, png: Path, svg: Path) -> None:
    """Training loss per step, one line style per method (readable in black and white)."""
    plt = pyplot()
    import pandas as pd

    styles = ["-", "--", "-.", ":", (0, (5, 1, 1, 1))]
    markers = ["o", "s", "^", "D", "v"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (method, path) in enumerate(curves.items()):
        if not Path(path).is_file():
            continue
        curve = pd.read_csv(path)
        ax.plot(
            curve["step"],
            curve["loss"],
            linestyle=styles[i % len(styles)],
            marker=markers[i % len(markers)],
            markersize=3,
            color="black",
            label=label(method),
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (text tokens)")
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(color="0.85", linewidth=0.5)
    fig.tight_layout()
    save_figure(fig, png, svg)


def knowledge_figure(curve_files: list[Path], title: str, png: Path, svg: Path) -> None:
    """Knowledge-acquisition curves (cft.evaluation.knowledge_curve): accuracy, with its
    interval as a band, against training tokens, one line per method."""
    plt = pyplot()
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D"]
    greys = ["0.1", "0.4", "0.6", "0.3"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, path in enumerate(curve_files):
        record = read_json(Path(path))
        points = record["points"]
        tokens = [p["tokens"] for p in points]
        ax.fill_between(
            tokens,
            [p["low"] for p in points],
            [p["high"] for p in points],
            color=greys[i % 4],
            alpha=0.15,
            linewidth=0,
        )
        ax.plot(
            tokens,
            [p["accuracy"] for p in points],
            linestyle=styles[i % 4],
            marker=markers[i % 4],
            markersize=3,
            color=greys[i % 4],
            label=label(record["method"]),
        )
    ax.axhline(25, color="0.7", linewidth=0.8, linestyle=":", label="chance (4 options)")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("held-out accuracy (%), 95% band")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(color="0.85", linewidth=0.5)
    fig.tight_layout()
    save_figure(fig, png, svg)
