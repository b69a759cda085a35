"""Atomic writes that replace only what the pipeline itself wrote.

A result is written in a scratch folder beside its target and renamed onto it when complete, so
a killed job leaves either the old result or the new one. A stage whose result is a set of
files writes them into one folder, renamed as a unit. Folders the pipeline publishes carry a
marker file (:data:`OUTPUT_MARKER`); an existing folder is replaced only if it is empty or
carries the marker, so pointing a command at a folder of other data fails before any work,
naming the folder. Scratch folders of killed runs are removed by the next run that writes the
same target.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cft.core.errors import CftError, DataFileError

# Written into every folder a stage publishes: the licence to replace it on a rerun.
OUTPUT_MARKER = ".cft-output"
SCRATCH_SUFFIX = ".tmp"


class OutputError(CftError, RuntimeError):
    """An output path cannot be written without destroying something the pipeline did not
    write, or is of the wrong kind (a folder where a file is expected, or the reverse)."""


def check_output(path: str | os.PathLike, *, directory: bool = False) -> Path:
    """Fail before any work if ``path`` cannot be published; returns it as a Path."""
    target = Path(path)
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{target}: cannot write there, {parent} is a file, not a folder")
    if target.is_symlink():
        # publishing renames the result onto the path: it would replace the link (or, for a
        # folder, fail after the work), never write where the link points
        raise OutputError(
            f"{target}: is a symbolic link (to {os.readlink(target)}); results are published "
            f"by renaming onto their path, which would replace the link. Give the path it "
            f"points to ({target.resolve()}) or remove the link"
        )
    if directory and target.exists() and not target.is_dir():
        raise OutputError(f"{target}: expected an output folder, but it is a file")
    if not directory and target.is_dir():
        raise OutputError(
            f"{target}: expected an output file path, but it is a folder; name the file to write"
        )
    if directory and target.is_dir() and not replaceable(target):
        raise OutputError(
            f"{target}: refusing to replace a folder that holds files this pipeline did not "
            f"write (no {OUTPUT_MARKER} marker); give a new or empty folder"
        )
    return target


# What Snakemake itself puts in a directory() output (after its job, or by --touch): no data.
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"


def replaceable(folder: Path) -> bool:
    """An empty folder (but for Snakemake's timestamp), or one a stage published."""
    return (folder / OUTPUT_MARKER).is_file() or all(
        path.name == SNAKEMAKE_TIMESTAMP for path in folder.iterdir()
    )


def _scratch_prefix(label: str) -> str:
    return f".{label}.{socket.gethostname()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_scratch(parent: Path, label: str) -> list[Path]:
    """Remove scratch folders for ``label`` left in ``parent`` by killed processes of this
    host (a live process's, or another host's, are left alone)."""
    removed = []
    prefix = _scratch_prefix(label)
    if not parent.is_dir():
        return removed
    for path in parent.glob(f"{glob.escape(prefix)}*{SCRATCH_SUFFIX}"):
        pid = path.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def scratch_dir(
    parent: str | os.PathLike, label: str, *, target: str | os.PathLike | None = None
) -> Iterator[Path]:
    """A scratch folder in ``parent`` (same file system as the result), removed on exit; those
    of earlier killed runs with the same label are removed first. A full or read-only file
    system met inside the block, however deep in a library's exceptions (datasets wraps
    them in its own), becomes an :class:`OutputError` naming ``target`` (default: the
    ``label`` in ``parent``), the result the work was for."""
    parent = Path(parent)
    target = Path(target) if target is not None else parent / label
    try:
        parent.mkdir(parents=True, exist_ok=True)
        clean_stale_scratch(parent, label)
        path = Path(
            tempfile.mkdtemp(
                prefix=f"{_scratch_prefix(label)}{os.getpid()}.", suffix=SCRATCH_SUFFIX, dir=parent
            )
        )
    except OSError as error:
        if _writing_failed(error, target):
            raise _unwritable(target, error) from None
        raise
    try:
        yield path
    except Exception as error:
        cause = write_failure(error, target)
        if cause is not None:
            raise _unwritable(target, cause) from None
        raise
    finally:
        shutil.rmtree(path, ignore_errors=True)


def publish(staged: Path, target: Path) -> None:
    """Rename ``staged`` onto ``target``. A staged folder gets the output marker; an existing
    target folder is replaced only if :func:`replaceable` (else :class:`OutputError`)."""
    if staged.is_dir():
        (staged / OUTPUT_MARKER).write_text("written by the cft pipeline; a rerun replaces it\n")
        check_output(target, directory=True)
    else:
        check_output(target)
    if target.is_dir():
        # rename the old folder out of the way first: the target is never missing for long
        # and never half-deleted
        trash = target.with_name(f".{target.name}.{os.getpid()}.old{SCRATCH_SUFFIX}")
        os.replace(target, trash)
        os.replace(staged, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, target)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; publish it onto ``path`` only if the block succeeds.

    Works for files and folders alike: the caller writes whatever it wants at the yielded path.
    """
    target = Path(path)
    # before any work: a parent that is a file, a folder of other data at the target
    check_output(target, directory=target.is_dir())
    with scratch_dir(target.parent, target.name, target=target) as tmp:
        staged = tmp / target.name
        yield staged
        if not staged.exists():
            raise FileNotFoundError(f"nothing was written to {staged} for {target}")
        publish(staged, target)


def _writing_failed(error: OSError, target: Path) -> bool:
    """A full or read-only file system, or no permission to write beside the target (not an
    input the caller could not read)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    beside = str(error.filename or "").startswith(str(target.parent))
    return error.errno == errno.EACCES and beside


def write_failure(error: BaseException, target: Path) -> OSError | None:
    """The OSError of a failed write toward ``target`` in ``error`` or the exceptions it was
    raised from or during (libraries wrap them: datasets' "An error occurred while generating
    the dataset"), or None if the error is not one."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and _writing_failed(error, target):
            return error
        error = error.__cause__ or error.__context__
    return None


def _unwritable(target: Path, error: OSError) -> OutputError:
    reason = os.strerror(error.errno) if error.errno else str(error)
    return OutputError(
        f"{target}: cannot be written ({reason}, in {target.parent}); nothing was published. "
        "Free space, or give an output path on a writable file system"
    )


def non_regular_kind(path: str | os.PathLike) -> str | None:
    """None if ``path`` is a regular file (or a link to one); else what it is, for a message.
    Every reader of a user's files asks first: opening a FIFO blocks until something writes
    to it, so a stage would hang on one instead of reading a file."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a link to a missing file" if path.is_symlink() else "not found"
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a named pipe (FIFO)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a truncated or non-JSON file raises DataFileError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise DataFileError(
            f"{path}: not valid JSON ({err}); was it truncated? rerun the stage that wrote it"
        ) from None
