"""Command-line plumbing shared by the stages' ``python -m cft.<stage>`` entry points."""

from __future__ import annotations

import argparse
from pathlib import Path

from cft.core import paths
from cft.core.config import ConfigError, load_config
from cft.core.logging_utils import main_module


def program_name() -> str | None:
    """``python -m cft.<stage>`` when a stage runs as a module (argparse would show the file
    name); None otherwise, for argparse's default."""
    name = main_module() or ""
    return f"python -m {name}" if name.startswith("cft.") else None


def stage_parser(
    doc: str, *, corpus: bool = False, domain_required: bool = True
) -> argparse.ArgumentParser:
    """A parser with the options every config-driven stage takes: --config and --domain
    (and, with ``corpus``, --corpus defaulting to the domain's corpus table)."""
    parser = argparse.ArgumentParser(prog=program_name(), description=doc.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml", help="workflow config file")
    parser.add_argument(
        "--domain", required=domain_required, help="a key of `domains` in the config"
    )
    if corpus:
        parser.add_argument("--corpus", help="documents.parquet (default: the corpus stage's)")
    return parser


def corpus_path(args: argparse.Namespace) -> Path:
    """The --corpus given, or where the corpus stage writes the domain's table."""
    return Path(args.corpus or paths.corpus_table(args.domain))


def stage_config(args: argparse.Namespace) -> dict:
    """The validated config of ``--config``, with ``--domain`` and ``--model`` (where the
    stage takes them) checked against it before any work."""
    config = load_config(args.config)
    for option, section in (("domain", "domains"), ("model", "models")):
        value = getattr(args, option, None)
        if value is not None and value not in config[section]:
            raise ConfigError(
                f"--{option} {value!r} is not defined under '{section}' in {args.config}; "
                f"defined: {sorted(config[section])}"
            )
    return config


def model_folder(path: str | Path, option: str) -> Path:
    """A model or tokenizer folder given on the command line (or its default), checked to
    exist: transformers would otherwise take a missing path for a hub repo id."""
    folder = Path(path)
    if not (folder / "config.json").is_file() and not (folder / "tokenizer.json").is_file():
        raise ConfigError(
            f"{option} {folder}: not a model folder (no config.json or tokenizer.json there); "
            f"build it with the base_model stage or give an existing folder"
        )
    return folder
