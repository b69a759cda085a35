"""Provenance records attached to every result: what config, code and packages produced it."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import cft

# Packages whose versions can change a result; recorded with every output.
TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "tokenizers",
    "huggingface_hub",
    "gguf",
    "pandas",
    "pyarrow",
    "numpy",
    "lm_eval",
    "snakemake",
    "vllm",
)


def config_hash(config: Any) -> str:
    """SHA-256 of the canonical JSON form of a config (or any part of one)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance(config_part: Any, *, seed: int | None = None, backend: str = "cpu", **extra) -> dict:
    """The provenance block written into every result file.

    ``config_part`` is the slice of the config that determines the result: its hash changes
    exactly when a rerun could change the output.
    """
    record = {
        "config_hash": config_hash(config_part),
        "seed": seed,
        "backend": backend,
        "cft_version": cft.__version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record
