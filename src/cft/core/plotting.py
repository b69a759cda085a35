"""Matplotlib set-up shared by the figure-writing stages: headless backend, atomic saves."""

from __future__ import annotations

from pathlib import Path

from cft.core.io import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (jobs run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, *paths: Path, dpi: int = 150) -> None:
    """Write ``fig`` to every path (format from the suffix, each file atomically), then close it."""
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=dpi)
    pyplot().close(fig)
