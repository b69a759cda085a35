"""Download stage (login node): corpora into resources/corpora/{domain}/ in the hub repo's own
layout, models into the HF cache (HF_HOME) with a manifest in resources/models/{model}.json.

    python -m cft.data.download corpus --config config/paper.yaml --domain biomed \\
        --out-dir resources/corpora/biomed
    python -m cft.data.download model --config config/paper.yaml --model llama-2-7b-chat \\
        --manifest resources/models/llama-2-7b-chat.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cft.core.cli import program_name, stage_config
from cft.core.config import ConfigError, domain_source
from cft.core.hub import fetch_dataset, fetch_model
from cft.core.io import check_output, publish, write_json
from cft.core.logging_utils import setup_logging
from cft.core.settings import stage_provenance
from cft.data.corpus import DOWNLOAD_PATTERNS, download_patterns

log = logging.getLogger(__name__)


def download_corpus(domain: str, source: dict, out_dir: Path) -> None:
    """Fetch a corpus repo; it lands in ``out_dir`` only when complete.

    Files go first to ``<out_dir>.partial``, which survives an interrupted job, so a rerun
    resumes instead of starting over.
    """
    patterns = download_patterns(source)
    if patterns is None or not source.get("repo_id"):
        raise ConfigError(
            f"domains.{domain}.source.type = {source['type']!r} is not downloadable; "
            f"expected one of {sorted([*DOWNLOAD_PATTERNS, 'text_files', 'jsonl'])} with a repo_id"
        )
    out_dir = check_output(out_dir, directory=True)
    partial = out_dir.with_name(out_dir.name + ".partial")
    log.info("downloading %s into %s", source["repo_id"], partial)
    fetch_dataset(
        domain,
        source["repo_id"],
        source["revision"],
        patterns,
        local_dir=partial,
    )
    files = sorted(
        p.relative_to(partial).as_posix()
        for p in partial.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(partial).parts
    )
    write_json(
        partial / "cft_download.json",
        {
            "domain": domain,
            "source": source,
            "files": len(files),
            "provenance": stage_provenance("download_corpus", source),
        },
    )
    publish(partial, out_dir)
    log.info("%s: %d files in %s", source["repo_id"], len(files), out_dir)


def download_model(name: str, model: dict, manifest: Path) -> None:
    """Fetch a hub model into the HF cache and record where it is."""
    if model["source"] != "hub":
        raise ConfigError(f"models.{name}.source = {model['source']!r}: only hub models download")
    folder = fetch_model(name, model["repo_id"], model["revision"])
    write_json(
        manifest,
        {
            "model": name,
            "repo_id": model["repo_id"],
            "revision": model["revision"],
            "snapshot": str(folder),
            "files": sorted(p.name for p in folder.iterdir()),
            "provenance": stage_provenance("download_model", model),
        },
    )
    log.info("%s: %s", name, folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=program_name(), description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    corpus = sub.add_parser("corpus", help="download a domain's corpus")
    corpus.add_argument("--config", default="config/config.yaml")
    corpus.add_argument("--domain", required=True)
    corpus.add_argument("--out-dir", required=True)
    model = sub.add_parser("model", help="download a hub model into the HF cache")
    model.add_argument("--config", default="config/config.yaml")
    model.add_argument("--model", required=True)
    model.add_argument("--manifest", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    config = stage_config(args)
    if args.what == "corpus":
        download_corpus(args.domain, domain_source(config, args.domain), Path(args.out_dir))
    else:
        download_model(args.model, config["models"][args.model], Path(args.manifest))


if __name__ == "__main__":
    main()
