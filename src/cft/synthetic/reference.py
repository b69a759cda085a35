"""The authors' published synthetic curves (loss.csv, innerprod.csv of their synthetic-exp/
folder): download and reading."""

from __future__ import annotations

from pathlib import Path

from cft.io import atomic_path

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
