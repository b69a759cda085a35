"""Logging set-up shared by every stage: to stderr, and to the rule's log file when given."""

from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path

# OS errors whose message is the whole story (with the path, where the OS gives one)
EXPLAINED_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENOENT})


def _module_name(module: str) -> str:
    """A module's import name; for the ``__main__`` of ``python -m cft.corpus``, ``cft.corpus``
    (classes defined there say ``__main__``)."""
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        return spec.name.removesuffix(".__main__") if spec else module
    return module


def project_error(exc_type: type) -> bool:
    """An exception class of this package's (or derived from one): raised on purpose, with a
    message that says what is wrong and where."""
    return any(_module_name(k.__module__).split(".")[0] == "cft" for k in exc_type.__mro__)


def setup_logging(
    log_file: str | Path | None = None, level: int = logging.INFO, *, job: str | None = None
) -> None:
    """Log to stderr (and ``log_file``); an uncaught error is logged as ``<job> failed:
    <message>``, ``job`` defaulting to the entry point (``cft.packing`` for ``python -m
    cft.packing``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    job = job or _module_name("__main__")
    if job == "__main__":
        job = Path(sys.argv[0]).name or "python"

    def log_uncaught(exc_type, exc, tb):
        # Rule logs then hold the reason a job failed, not only the job's last progress line.
        # The pipeline's own errors say what is wrong and where: their message alone (a
        # traceback with CFT_TRACEBACK=1); anything else is a bug, shown with its traceback.
        explained = project_error(exc_type) or (
            issubclass(exc_type, OSError) and exc.errno in EXPLAINED_ERRNOS
        )
        trace = None if explained and not os.environ.get("CFT_TRACEBACK") else (exc_type, exc, tb)
        logging.getLogger("cft").critical("%s failed: %s", job, exc, exc_info=trace)

    sys.excepthook = log_uncaught


def start_job(smk) -> None:
    """What every Snakemake entry script (workflow/scripts) does first: log to the rule's log.
    The scripts find this package through PYTHONPATH, which common.smk sets for every job."""
    setup_logging(smk.log[0] if smk.log else None, job=f"rule {smk.rule}")
