"""Contextual fine-tuning (CFT) reproduction pipeline: the logic behind the Snakemake rules."""

__version__ = "0.1.0"
