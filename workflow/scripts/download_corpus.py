"""Snakemake entry point: fetch a domain's corpus from the hub (cft.download)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft.download import download_corpus
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
download_corpus(snakemake.wildcards.domain, snakemake.params.source, Path(snakemake.output[0]))
