"""Snakemake entry point: download one domain's corpus (cft.data.download)."""

from pathlib import Path

from cft.core.config import domain_source
from cft.core.logging_utils import start_job
from cft.data.download import download_corpus

start_job(snakemake)
domain = snakemake.wildcards.domain
download_corpus(domain, domain_source(snakemake.config, domain), Path(snakemake.output[0]))
