"""``python -m cft.cluster.recover``: the SLURM jobs a dead Snakemake controller left behind.

When the controller dies (login node lost, SSH dropped, killed for memory) its SLURM jobs go on
and the working directory stays locked. This lists the workflow's jobs SLURM still holds (the
executor plugin submits them from the working directory and comments them ``rule_<rule>...``;
the batch script names the Snakemake job), then, as asked:

- ``--cancel``: a running job with a job step (a train job: the trainer runs as a step) gets
  SIGTERM on its steps, so that the trainer saves a checkpoint and stops (docs/cluster.md,
  "Preemption and time limits"); any other job, or one still running after ``--grace``
  seconds, is cancelled outright;
- ``--wait``: the jobs are left to finish;

then waits until every one has ended, unlocks the working directory (``snakemake --unlock``)
and records in Snakemake's metadata the jobs that completed (a job of the plugin records
none: its controller does; ``snakemake --touch --target-jobs``, nothing else touched). The
restart, the same snakemake command as before, then resumes each cancelled train job from its
checkpoint and runs nothing twice. Usage::

    python -m cft.cluster.recover [--cancel | --wait] -- <the crashed run's snakemake options>
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cft.cluster import ClusterError
from cft.core.cli import program_name
from cft.core.logging_utils import setup_logging

# The slurm executor plugin's `--comment` for a job: rule_<rule>[_wildcards_<values>].
PLUGIN_COMMENT_PREFIX = "rule_"
FORGOTTEN = "ENDED"  # a job slurmctld no longer lists (after MinJobAge): ended, state unknown
# SLURM's end states; a job in any other state still holds (or waits for) resources.
ENDED_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
     "BOOT_FAIL", "DEADLINE", FORGOTTEN}
)  # fmt: skip
SLURM_TIMEOUT_S = 60  # one squeue/scontrol/scancel call; a hung controller fails loudly


@dataclass(frozen=True)
class SlurmJob:
    """One SLURM job of the workflow: its id, the Snakemake run that submitted it (the job's
    name is the run's UUID), its state and the Snakemake job(s) it runs
    (``rule:wildcard=value,...``, as the executor passes them with ``--target-jobs``)."""

    job_id: str
    run_id: str
    state: str
    elapsed: str
    targets: tuple[str, ...]

    @property
    def label(self) -> str:
        return " ".join(self.targets)


def slurm(*command: str) -> str:
    """Run a SLURM client command; its stdout. Its failure names the command and SLURM's
    message."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=SLURM_TIMEOUT_S, check=False
        )
    except FileNotFoundError as err:
        raise ClusterError(
            f"{command[0]} not found: run this where the workflow's snakemake ran (the login "
            "node), with SLURM's client commands on PATH"
        ) from err
    except subprocess.TimeoutExpired as err:
        raise ClusterError(
            f"`{shlex.join(command)}` did not answer in {SLURM_TIMEOUT_S} s: is slurmctld up?"
        ) from err
    if done.returncode != 0:
        raise ClusterError(f"`{shlex.join(command)}` failed: {done.stderr.strip()}")
    return done.stdout


def batch_targets(script: str) -> tuple[str, ...]:
    """The Snakemake jobs a plugin job's batch script runs: the values of ``--target-jobs``."""
    for line in script.splitlines():
        if "--target-jobs" not in line:
            continue
        words = shlex.split(line)
        values = words[words.index("--target-jobs") + 1 :]
        ends = [i for i, word in enumerate(values) if word.startswith("-")]
        return tuple(values[: ends[0] if ends else len(values)])
    return ()


def workflow_jobs(directory: Path) -> list[SlurmJob]:
    """This user's SLURM jobs not yet ended that the executor plugin submitted from
    ``directory``."""
    directory = directory.resolve()
    listing = slurm("squeue", "--me", "--noheader", "--format=%i|%j|%T|%M|%k|%Z")
    jobs = []
    for line in listing.splitlines():
        job_id, run_id, state, elapsed, comment, workdir = line.split("|", 5)
        if not comment.startswith(PLUGIN_COMMENT_PREFIX) or Path(workdir).resolve() != directory:
            continue
        script = slurm("scontrol", "write", "batch_script", job_id, "-")
        targets = batch_targets(script) or (comment,)
        jobs.append(SlurmJob(job_id, run_id, state, elapsed, targets))
    return jobs


def job_steps(job_id: str) -> list[str]:
    """The job's own steps (``<id>.0``, ...; not its batch or extern step)."""
    listing = slurm("squeue", "--steps", "--noheader", f"--jobs={job_id}", "--format=%i")
    return [step for step in listing.split() if step.partition(".")[2].isdigit()]


def job_states(job_ids: list[str]) -> dict[str, str]:
    """The state SLURM knows for each job (ended ones stay listed for MinJobAge); a job it
    has forgotten maps to :data:`FORGOTTEN`."""
    listing = slurm("squeue", "--me", "--noheader", "--states=all", "--format=%i|%T")
    known = dict(line.split("|", 1) for line in listing.splitlines())
    return {job_id: known.get(job_id, FORGOTTEN) for job_id in job_ids}


def wait_for(jobs: list[SlurmJob], *, timeout: float | None, poll: float) -> dict[str, str]:
    """Wait until every job has ended (or ``timeout`` seconds): each job's last state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ids = [job.job_id for job in jobs]
    with tqdm(total=len(ids), desc="SLURM jobs ended", unit="job", file=sys.stderr) as bar:
        while True:
            states = job_states(ids)
            ended = sum(state in ENDED_STATES for state in states.values())
            bar.update(ended - bar.n)
            if ended == len(ids) or (deadline is not None and time.monotonic() >= deadline):
                return states
            time.sleep(poll)


def stop(jobs: list[SlurmJob], *, grace: float, poll: float) -> dict[str, str]:
    """Cancel the jobs, a running job with steps by SIGTERM to its steps first (the trainer
    checkpoints and stops); what still runs after ``grace`` seconds is cancelled outright.
    Each job's last state."""
    signalled = []
    for job in jobs:
        if job.state == "RUNNING" and job_steps(job.job_id):
            slurm("scancel", "--signal=TERM", job.job_id)
            signalled.append(job)
            print(f"  {job.job_id}: SIGTERM to its steps ({job.label})", file=sys.stderr)
        else:
            slurm("scancel", job.job_id)
            print(f"  {job.job_id}: cancelled ({job.label})", file=sys.stderr)
    states = wait_for(signalled, timeout=grace, poll=poll) if signalled else {}
    late = [job for job in signalled if states[job.job_id] not in ENDED_STATES]
    for job in late:
        print(f"  {job.job_id}: still running after {grace:.0f} s; cancelled", file=sys.stderr)
        slurm("scancel", job.job_id)
    return wait_for(jobs, timeout=None, poll=poll)


def live_controllers(directory: Path) -> list[int]:
    """Snakemake controllers running on this host in ``directory`` (not the plugin's jobs,
    which run in remote mode, nor this process's ancestors)."""
    directory = directory.resolve()
    ours = _ancestors(os.getpid())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in ours:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:  # gone, or not ours to read
            continue
        words = [w.decode(errors="replace") for w in argv]
        is_snakemake = any(Path(w).name == "snakemake" or w.endswith("snakemake/__main__.py")
                           or w == "snakemake" for w in words)  # fmt: skip
        remote = "--mode" in words and "remote" in words
        if is_snakemake and not remote and "--unlock" not in words and cwd == directory:
            found.append(int(proc.name))
    return found


def _ancestors(pid: int) -> set[int]:
    seen = {pid}
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rpartition(")")[2].split()[1])
        seen.add(pid)
    return seen


def snakemake(options: list[str], *extra: str) -> None:
    """Run this environment's snakemake with the crashed run's options and ``extra``."""
    command = [sys.executable, "-m", "snakemake", *options, *extra]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ClusterError(
            f"`{shlex.join(command)}` failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
        )


def without_targets(options: list[str]) -> list[str]:
    """The snakemake options without their target files and rules, as snakemake's own
    parser reads them."""
    from snakemake.cli import get_argument_parser

    targets = set(get_argument_parser().parse_known_args(options)[0].targets)
    return [word for word in options if word not in targets]


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description=__doc__.split("\n\n")[0].partition(": ")[2],
        epilog="Everything after `--` is passed to snakemake as the crashed run had it "
        "(--profile, --configfile, --directory, ...).",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--cancel",
        action="store_true",
        help="stop the jobs (train jobs checkpoint first), then record and unlock",
    )
    action.add_argument(
        "--wait", action="store_true", help="let the jobs finish, then record and unlock"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=600,
        help="seconds a signalled train job gets to checkpoint before it is cancelled "
        "outright (default 600: one optimizer step and one checkpoint)",
    )
    parser.add_argument("--poll", type=float, default=10, help="seconds between job checks")
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, options = parser.parse_args(argv[:split]), argv[split + 1 :]
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("-d", "--directory", default=".")
    args.directory = Path(where.parse_known_args(options)[0].directory)
    if (args.cancel or args.wait) and not options:
        parser.error(
            "give the crashed run's snakemake options after `--` (e.g. `-- --profile "
            "profiles/slurm --configfile config/paper.yaml`): the unlock and the metadata of "
            "completed jobs need its config"
        )
    return args, options


def recover(args: argparse.Namespace, options: list[str]) -> dict[str, str]:
    """List the workflow's jobs; with --cancel or --wait, end them, record and unlock. The
    last state of each job."""
    jobs = workflow_jobs(args.directory)
    where = args.directory.resolve()
    print(f"{len(jobs)} SLURM job(s) of the workflow in {where} not ended:", file=sys.stderr)
    for job in jobs:
        print(f"  {job.job_id:>10} {job.state:<11} {job.elapsed:>10}  {job.label}  "
              f"(run {job.run_id})", file=sys.stderr)  # fmt: skip
    if not (args.cancel or args.wait):
        print("Rerun with --cancel (train jobs checkpoint first) or --wait, followed by `--` "
              "and the crashed run's snakemake options.", file=sys.stderr)  # fmt: skip
        return {job.job_id: job.state for job in jobs}
    controllers = live_controllers(args.directory)
    if controllers:
        raise ClusterError(
            f"a snakemake controller still runs in {where} (pid {', '.join(map(str, controllers))}"
            "): stop it first; unlocking under it would let two controllers submit the same jobs"
        )
    states = stop(jobs, grace=args.grace, poll=args.poll) if args.cancel else {}
    if args.wait:
        states = wait_for(jobs, timeout=None, poll=args.poll)
    snakemake(options, "--unlock")
    completed = [job for job in jobs if states.get(job.job_id) == "COMPLETED"]
    for job in jobs:
        print(f"  {job.job_id}: {states.get(job.job_id, '?')} ({job.label})", file=sys.stderr)
    if completed:
        # the plugin's jobs leave their outputs without metadata: record it, as their
        # controller would have, so that later config or code changes still trigger reruns.
        # Only theirs: --touch would also mark the run's own targets done if they need to run.
        targets = [target for job in completed for target in job.targets]
        snakemake(without_targets(options), "--touch", "--target-jobs", *targets)
    print(f"Unlocked {where}; the metadata of {len(completed)} completed job(s) recorded. "
          f"Restart with the same command: snakemake {shlex.join(options)}",
          file=sys.stderr)  # fmt: skip
    return states


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    recover(*parse_args(argv))


if __name__ == "__main__":
    main()
