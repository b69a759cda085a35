"""Logging set-up shared by every stage: to stderr, and to the rule's log file when given."""

from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path

from cft.core.errors import CftError

# OS errors whose message is the whole story (with the path, where the OS gives one)
EXPLAINED_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENOENT})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main_module() -> str | None:
    """The module run as ``__main__`` (``cft.data.corpus`` for ``python -m cft.data.corpus``),
    or None for a script or ``python -c``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name.removesuffix(".__main__") if spec else None


def setup_logging(
    log_file: str | Path | None = None, level: int = logging.INFO, *, job: str | None = None
) -> None:
    """Log to stderr (and ``log_file``); an uncaught error is logged as ``<job> failed:
    <message>``, ``job`` defaulting to the entry point (``cft.packing.tokenize`` for ``python -m
    cft.packing.tokenize``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level,
        format=LOG_FORMAT,
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    job = job or main_module() or Path(sys.argv[0]).name or "python"

    def log_uncaught(exc_type, exc, tb):
        # Rule logs then hold the reason a job failed, not only the job's last progress line.
        # The pipeline's own errors say what is wrong and where: their message alone (a
        # traceback with CFT_TRACEBACK=1); anything else is a bug, shown with its traceback.
        explained = issubclass(exc_type, CftError) or (
            issubclass(exc_type, OSError) and exc.errno in EXPLAINED_ERRNOS
        )
        trace = None if explained and not os.environ.get("CFT_TRACEBACK") else (exc_type, exc, tb)
        logging.getLogger(__name__.partition(".")[0]).critical(
            "%s failed: %s", job, exc, exc_info=trace
        )

    sys.excepthook = log_uncaught


def start_job(smk) -> None:
    """What every Snakemake entry script (workflow/scripts) does first: log to the rule's log.
    The scripts find this package through PYTHONPATH, which common.smk sets for every job."""
    setup_logging(smk.log[0] if smk.log else None, job=f"rule {smk.rule}")
