"""Snakemake entry point: fetch a domain's corpus from the hub (cft.download)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))
from cft.config import domain_source
from cft.download import download_corpus
from cft.logging_utils import setup_logging

setup_logging(snakemake.log[0])
domain = snakemake.wildcards.domain
download_corpus(domain, domain_source(snakemake.config, domain), Path(snakemake.output[0]))
