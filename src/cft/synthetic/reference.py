"""The authors' published synthetic results: their curves over fine-tuning steps (loss.csv,
innerprod.csv of their synthetic-exp/ folder: polynomial and sumdot) and each run's final
evaluation (synthetic-exp/models/{task}_2nn_regression/{condition}/metrics.json: MSE at each
number of in-context points, for polynomial, sumdot and relu): download and reading."""

from __future__ import annotations

from pathlib import Path

from cft.core.hub import HubUnavailableError
from cft.core.io import atomic_path
from cft.core.methods import CFT, CPT, NEGCFT

# What the authors publish as CSV under synthetic-exp/.
REFERENCE_FILES = ("loss.csv", "innerprod.csv")
# Their condition names in the column headers ({task}_{name}) and run folders.
REFERENCE_NAMES = {CPT.name: "uft", CFT.name: "cft", NEGCFT.name: "neg-cft"}
# The evaluation setting of metrics.json that matches the runs' own inputs.
REFERENCE_SETTING = "standard"


def run_metrics_file(task: str, condition: str) -> str:
    """Where a run's metrics.json lies under synthetic-exp/ (and under the downloaded copy)."""
    return f"models/{task}_2nn_regression/{REFERENCE_NAMES[condition]}/metrics.json"


def reference_files() -> list[str]:
    from cft.synthetic import TASKS

    return [*REFERENCE_FILES, *(run_metrics_file(t, c) for t in TASKS for c in REFERENCE_NAMES)]


def download_reference(base_url: str, out_dir: Path) -> None:
    """Fetch the authors' published curves (a networked node; any URL urllib can open)."""
    import urllib.request

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name in reference_files():
            url = f"{base_url.rstrip('/')}/{name}"
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    (tmp / name).write_bytes(response.read())
            except OSError as err:
                raise HubUnavailableError(
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


def reference_mse(reference_dir: Path | None, task: str) -> dict[str, list[float]]:
    """{condition: mean MSE at each number of in-context points} of the authors' final
    evaluation of each run (metrics.json, setting "standard"); conditions without the file
    are left out."""
    import json

    found: dict[str, list[float]] = {}
    if reference_dir is None:
        return found
    for condition in REFERENCE_NAMES:
        path = Path(reference_dir) / run_metrics_file(task, condition)
        if path.is_file():
            (model,) = json.loads(path.read_text())[REFERENCE_SETTING].values()
            found[condition] = [float(x) for x in model["mean"]]
    return found
