"""Restore finished results onto a new checkout or machine: every workflow output gets back the
modification time Snakemake recorded for it, so copies made by tools that renew file times
(``cp -r``, ``scp``, most object stores) are seen as up to date.

Snakemake's ``mtime`` rerun trigger replans a job whose input is newer than its output. After a
copy that renews times, the order of the new times is the order of copying, and the tokenized
folders (too large for Snakemake's input checksums) look updated: all trainings and everything
after them are replanned. The times are Snakemake's own: each output's metadata record
(``.snakemake/metadata``, which must be copied with ``results/``) holds the time the output had
when its job finished (``endtime``). Setting every output (and everything in an output folder)
back to it restores the order the jobs ran in; params, code digests and input sets are
untouched, so a config change still reruns what it affects.

    python -m cft.core.restore            # in the workflow's working directory, after copying
    python -m cft.core.restore --check    # count the outputs whose times differ, change nothing
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cft.core.errors import CftError
from cft.core.logging_utils import setup_logging

log = logging.getLogger(__name__)

METADATA = Path(".snakemake") / "metadata"


class RestoreError(CftError, RuntimeError):
    """Nothing to restore from; the message says what is missing."""


def recorded_path(record_file: Path, metadata: Path) -> str:
    """The output path a Snakemake metadata file is the record of: its name (and, for long
    paths, the ``@``-prefixed folders above it) is the path in URL-safe base64."""
    parts = record_file.relative_to(metadata).parts
    encoded = "".join(part.removeprefix("@") for part in parts)
    return base64.urlsafe_b64decode(encoded.encode()).decode()


@dataclass
class Restored:
    outputs: int = 0  # outputs whose time was set back
    unchanged: int = 0  # already at their recorded time
    absent: int = 0  # recorded, but not in this working directory
    unrecorded: int = 0  # records without an end time (an incomplete job's)


def _tree(path: Path):
    """A file, or a folder and everything under it (links are not followed)."""
    yield path
    if path.is_dir() and not path.is_symlink():
        for folder, subfolders, files in os.walk(path):
            for name in subfolders + files:
                yield Path(folder) / name


def restore(workdir: Path, *, check: bool = False) -> Restored:
    """Set every recorded output under ``workdir`` to its recorded end time (with ``check``,
    only count)."""
    metadata = workdir / METADATA
    if not metadata.is_dir():
        raise RestoreError(
            f"{metadata}: no Snakemake metadata to restore from; copy the `.snakemake` folder "
            "along with the results (its records hold each output's time)"
        )
    done = Restored()
    for record_file in sorted(p for p in metadata.rglob("*") if p.is_file()):
        try:
            record = json.loads(record_file.read_text())
            output = workdir / recorded_path(record_file, metadata)
        except (ValueError, UnicodeDecodeError) as err:
            raise RestoreError(f"{record_file}: not a Snakemake metadata record ({err})") from None
        endtime = record.get("endtime")
        if endtime is None or record.get("incomplete"):
            done.unrecorded += 1
            continue
        if not output.exists() and not output.is_symlink():
            done.absent += 1
            continue
        paths = list(_tree(output))
        if all(p.lstat().st_mtime == endtime for p in paths):
            done.unchanged += 1
            continue
        done.outputs += 1
        if not check:
            for path in paths:
                os.utime(path, (endtime, endtime), follow_symlinks=False)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default=".", help="the workflow's working directory")
    parser.add_argument("--check", action="store_true", help="count, change nothing")
    args = parser.parse_args(argv)
    setup_logging()
    done = restore(Path(args.workdir), check=args.check)
    log.info(
        "%s %d output(s) to their recorded times; %d already there, %d recorded but absent, "
        "%d without an end time",
        "would restore" if args.check else "restored",
        done.outputs,
        done.unchanged,
        done.absent,
        done.unrecorded,
    )


if __name__ == "__main__":
    main()
