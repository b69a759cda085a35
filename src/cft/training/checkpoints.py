"""Resumable checkpoints: one live writer per run (:func:`run_lock`), which folder may be
resumed, and which belongs to another run; when one is due (by steps or by training time), and
the Trainer callbacks that mark a checkpoint complete and save by time."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from transformers import TrainerCallback

from cft.core.io import OutputError, read_json, write_json
from cft.core.provenance import config_hash
from cft.training import TrainingError

log = logging.getLogger(__name__)

COMPLETE_MARKER = "cft_checkpoint_complete"
RUN_RECORD = "cft_run.json"
JOB_SPEC = "job.json"  # the job handed to torchrun workers, written beside the checkpoints


# Filesystems without lock support (some NFS mounts without lockd, Lustre without -o flock).
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def lock_path(checkpoint_dir: Path) -> Path:
    """The run's lock file, beside its checkpoint folder (which is removed after training)."""
    return checkpoint_dir.with_name(checkpoint_dir.name + ".lock")


@contextlib.contextmanager
def run_lock(checkpoint_dir: Path):
    """Hold the run's exclusive lock for the block: one job at a time writes a run's
    checkpoints and publishes its model. A second job for the same run (a restarted
    controller that did not see the first still running) stops at once, naming the holder
    (host, pid, SLURM job) and how to stop it. The lock is the kernel's (``flock``), so it
    dies with its holder, whatever kills it; a filesystem that has no locks gets a warning.
    The lock file is removed when the block ends, as the holder leaves it."""
    path = lock_path(Path(checkpoint_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, locked = _locked_file(path, checkpoint_dir)
    try:
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        yield
    finally:
        if locked:  # still the holder: no other job can hold this file's lock
            path.unlink(missing_ok=True)
        handle.close()  # releases the lock


def _locked_file(path: Path, checkpoint_dir: Path):
    """The lock file, opened and locked: (handle, whether locked). A file the previous holder
    removed between this job's open and its lock is opened again, so that two jobs never hold
    locks on two files of one name."""
    while True:
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise TrainingError(
                f"{checkpoint_dir}: another job is training this run ({holder}); two jobs "
                f"would write the same checkpoints and publish the model twice. Wait for it, "
                f"or stop it (scancel <slurm_job>, or kill <pid> on its host) and rerun "
                f"(docs/cluster.md, 'A crashed controller')"
            ) from None
        except OSError as err:
            if err.errno not in NO_LOCKS:
                handle.close()
                raise
            log.warning("%s: the filesystem takes no locks (%s); running unlocked", path, err)
            return handle, False
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle, True
        handle.close()


ATTEMPTS_DIR = "attempts"  # in the checkpoint folder, then beside the published model


def begin_attempt(checkpoint_dir: Path, resume: Path | None) -> Path:
    """Record this job as the run's next attempt (``attempts/attempt-N.json`` in the checkpoint
    folder: when, where, which SLURM job, the step it resumes from) and return the path of its
    own log, ``attempt-N.log`` beside it. A failed attempt's record and log outlive it (the rule's
    log is rewritten by each attempt); the published model keeps them all."""
    folder = Path(checkpoint_dir) / ATTEMPTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.glob("attempt-*.json"))) + 1
    write_json(
        folder / f"attempt-{number}.json",
        {
            "attempt": number,
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "resumed_from_step": checkpoint_step(resume) if resume else None,
        },
    )
    return folder / f"attempt-{number}.log"


def attempt_records(checkpoint_dir: Path) -> list[dict]:
    """The run's attempts, in order (:func:`begin_attempt`)."""
    folder = Path(checkpoint_dir) / ATTEMPTS_DIR
    records = [read_json(path) for path in folder.glob("attempt-*.json")]
    return sorted(records, key=lambda record: record["attempt"])


def checkpoint_step(folder: Path) -> int | None:
    """N of a ``checkpoint-N`` folder (None for any other name)."""
    step = folder.name.removeprefix("checkpoint-")
    return int(step) if folder.name.startswith("checkpoint-") and step.isdigit() else None


def last_complete_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder that was completely written (it carries the marker the
    save callback writes after the Trainer has saved everything); a folder cut short by a kill
    is ignored."""
    if not checkpoint_dir.is_dir():
        return None
    complete = [
        path
        for path in checkpoint_dir.glob("checkpoint-*")
        if (path / COMPLETE_MARKER).is_file() and checkpoint_step(path) is not None
    ]
    return max(complete, key=checkpoint_step, default=None)


def run_key(
    recipe: dict,
    seed: int,
    data_fingerprint: str,
    base_model_fingerprint: str,
    global_batch_size: int,
    world: int,
) -> str:
    """What a checkpoint folder must have been made by to be resumed: the training settings,
    the seed, the data, the base model and the batch layout."""
    return config_hash(
        [recipe, seed, data_fingerprint, base_model_fingerprint, global_batch_size, world]
    )


def prepare_checkpoint_dir(checkpoint_dir: Path, run_key: str) -> None:
    """Keep checkpoints only if they belong to the same run (config, data and base model); a
    change of any of them starts afresh rather than resuming into a different run."""
    record = checkpoint_dir / RUN_RECORD
    foreign = checkpoint_dir.is_dir() and any(
        path.name != JOB_SPEC for path in checkpoint_dir.iterdir()
    )
    if foreign and not record.is_file():
        raise OutputError(
            f"{checkpoint_dir}: refusing to use a non-empty folder without {RUN_RECORD} as the "
            f"checkpoint folder (it would be deleted after training); give a new or empty folder"
        )
    if record.is_file() and read_json(record).get("run_key") != run_key:
        log.warning(
            "%s: checkpoints of a different run (config or data changed); removing them",
            checkpoint_dir,
        )
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json(record, {"run_key": run_key})


def remove_checkpoints_after(checkpoint_dir: Path, step: int) -> None:
    """Remove every ``checkpoint-N`` with N above ``step`` (saved after the last good state)."""
    for folder in checkpoint_dir.glob("checkpoint-*"):
        found = checkpoint_step(folder)
        if found is not None and found > step:
            shutil.rmtree(folder)


def checkpoint_due(
    seconds_since_save: float,
    last_save_seconds: float | None,
    every_minutes: float,
    max_overhead: float,
) -> bool:
    """Time-based checkpoint cadence (``training.save_every_minutes``): save once the training
    time since the last checkpoint reaches ``every_minutes``, or, when the last checkpoint took
    longer to write than that allows, ``last_save_seconds / max_overhead``, so that writing
    checkpoints never costs more than ``max_overhead`` of the training time. A 7B run's sharded
    checkpoint (weights and AdamW state, ~84 GB) at 0.5 GB/s takes ~170 s: at 5% the interval is
    at least ~56 minutes, where a fixed 50 steps would have saved every few minutes."""
    interval = every_minutes * 60
    if last_save_seconds:
        interval = max(interval, last_save_seconds / max_overhead)
    return seconds_since_save >= interval


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint complete once the Trainer has written all of it."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / COMPLETE_MARKER).write_text(f"{state.global_step}\n")


class TimedCheckpoints(TrainerCallback):
    """Saves by training time (:func:`~cft.training.checkpoints.checkpoint_due`) instead of
    every ``save_steps``. Every rank must save together (a sharded checkpoint is collective),
    so the ranks agree on each step's decision (one all-reduce of a flag per optimizer step)."""

    def __init__(self, every_minutes: float, max_overhead: float):
        self.every_minutes, self.max_overhead = every_minutes, max_overhead
        self.last_save_seconds = self.requested = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.since = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        now = time.perf_counter()
        due = checkpoint_due(
            now - self.since, self.last_save_seconds, self.every_minutes, self.max_overhead
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([int(due)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            due = bool(flag.item())
        if due:
            control.should_save = True
            self.requested = now

    def on_save(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self.requested is not None:
            self.last_save_seconds, self.requested = now - self.requested, None
        self.since = now


class StopOnSignal(TrainerCallback):
    """Turns a signal (preemption, a warning before the time limit) into a complete
    checkpoint at the next optimizer step's end, then stops training: the caller raises
    :class:`~cft.training.TrainingStopped` instead of saving the model, and the retry resumes
    from that checkpoint instead of the last periodic one. Every rank must save together, so
    the ranks agree on each step's decision (one all-reduce of a flag per optimizer step); a
    rank that got no signal follows the one that did. ``signals``: names (``TERM``,
    ``USR1``, ...); :meth:`installed` holds the handlers, the previous ones restored after."""

    def __init__(self, signals: tuple[str, ...]):
        self.signals = [getattr(signal, f"SIG{name}") for name in signals]
        self.received: int | None = None
        self.stopped_at: int | None = None  # the step of the checkpoint saved on the signal

    def _note(self, signum, _frame) -> None:
        self.received = signum  # acted on at the step's end (no logging inside a handler)

    @contextlib.contextmanager
    def installed(self):
        previous = {sig: signal.signal(sig, self._note) for sig in self.signals}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        stop = self.received is not None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([int(stop)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            control.should_save = control.should_training_stop = True
            self.stopped_at = state.global_step
            log.warning(
                "%s: saving checkpoint-%d, then stopping", self.signal_name, state.global_step
            )

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.received).name if self.received else "another rank's signal"
