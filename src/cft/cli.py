"""Command-line plumbing shared by the stages' ``python -m cft.<stage>`` entry points."""

from __future__ import annotations

import argparse
from pathlib import Path


def stage_parser(
    doc: str, *, corpus: bool = False, domain_required: bool = True
) -> argparse.ArgumentParser:
    """A parser with the options every config-driven stage takes: --config and --domain
    (and, with ``corpus``, --corpus defaulting to the domain's corpus table)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml", help="workflow config file")
    parser.add_argument(
        "--domain", required=domain_required, help="a key of `domains` in the config"
    )
    if corpus:
        parser.add_argument("--corpus", help="documents.parquet (default: the corpus stage's)")
    return parser


def corpus_path(args: argparse.Namespace) -> Path:
    """The --corpus given, or where the corpus stage writes the domain's table."""
    return Path(args.corpus or f"results/corpus/{args.domain}/documents.parquet")
