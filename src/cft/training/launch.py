"""Where and how a training job runs: its processes, its batch layout and the command that
starts them. No heavy imports: the workflow's rules import this module for job resources."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

from cft.config import ConfigError
from cft.training import TrainingError


@dataclass(frozen=True)
class BatchPlan:
    world_size: int
    per_device_batch_size: int
    gradient_accumulation_steps: int

    @property
    def global_batch_size(self) -> int:
        return self.world_size * self.per_device_batch_size * self.gradient_accumulation_steps


def plan_batch(global_batch_size: int, world_size: int, max_per_device: int) -> BatchPlan:
    """Split a fixed global batch over ``world_size`` devices.

    The micro-batch is the largest divisor of the per-device share not above ``max_per_device``,
    so that micro-batch x accumulation x devices is exactly the configured global batch.
    """
    if global_batch_size % world_size:
        raise ConfigError(
            f"training.global_batch_size = {global_batch_size} is not divisible by the "
            f"{world_size} devices of the job (nodes x gpus_per_node); choose a multiple of "
            f"{world_size} or change training.resources"
        )
    share = global_batch_size // world_size
    micro = max(d for d in range(1, min(share, max_per_device) + 1) if share % d == 0)
    return BatchPlan(world_size, micro, share // micro)


def processes_per_node(resources: dict) -> int:
    """Training processes per node: one per GPU, or ``cpu_processes_per_node`` without GPUs."""
    return resources["gpus_per_node"] or resources["cpu_processes_per_node"]


def world_size_of(resources: dict) -> int:
    return resources["nodes"] * processes_per_node(resources)


def gres_of(resources: dict) -> str:
    """SLURM generic resources for one node's GPUs ('' without GPUs)."""
    if not resources["gpus_per_node"]:
        return ""
    model = f"{resources['gpu_model']}:" if resources["gpu_model"] else ""
    return f"gpu:{model}{resources['gpus_per_node']}"


def free_port(host: str = "") -> int:
    """A TCP port nobody listens on now: each job gets its own rendezvous port, so two jobs on
    one node never collide on a fixed one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch_command(resources: dict, *, host: str | None = None, port: int | None = None) -> list:
    """The command that starts the training processes (append ``-m cft.training --job ...``).

    One process: the current Python. One node with several: ``torchrun --standalone`` (which
    picks its own free port). Several nodes (a SLURM allocation with one task per node):
    ``srun torchrun`` with c10d rendezvous on the first node, where the job script runs. The
    step states its CPUs, GPUs and memory: since SLURM 22.05 srun does not inherit
    --cpus-per-task from the allocation, and without it every node's workers share one core.
    """
    nodes, procs = resources["nodes"], processes_per_node(resources)
    if nodes == 1 and procs <= 1:
        return [sys.executable]
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}"]
    if nodes == 1:
        return [*torchrun, "--standalone"]
    gres = gres_of(resources)
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={resources['cpus_per_task']}",
        *([f"--gres={gres}"] if gres else []),
        f"--mem={resources['mem_mb']}M",
        "--kill-on-bad-exit=1",
        *torchrun,
        f"--nnodes={nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host or socket.gethostname()}:{port or free_port()}",
        f"--rdzv-id={os.environ.get('SLURM_JOB_ID', 'cft')}",
    ]


@dataclass(frozen=True)
class Parallelism:
    """How the job's processes share the work: one process, DDP, or FSDP2."""

    world_size: int
    fsdp: bool
    cuda: bool

    @property
    def cpu_fsdp(self) -> bool:
        return self.fsdp and not self.cuda


def parallelism_of(recipe, world: int, *, cuda: bool, launched: bool = False) -> Parallelism:
    """FSDP2 on several devices unless the recipe says ``fsdp: no_shard`` (then DDP). One GPU
    started by torchrun (``launched``: a process group exists) shards over a 1-rank mesh, the
    same code path as the cluster's jobs (bench/gpu_check.py runs it so); a plain process
    trains without FSDP."""
    sharded = world > 1 or (cuda and launched)
    return Parallelism(world, fsdp=sharded and recipe.fsdp != "no_shard", cuda=cuda)


def check_world(label: str, model: str, resources: dict, world: int, *, lora: bool) -> None:
    """The started processes must be the ones the model's resources describe, and LoRA runs in
    one process."""
    expected_world = world_size_of(resources)
    if world != expected_world:
        raise TrainingError(
            f"train job {label}: {world} processes were started but training.resources for "
            f"{model!r} describe {expected_world}"
        )
    if lora and world > 1:
        raise TrainingError(
            f"train job {label}: training.lora runs in one process; set the model's "
            f"training.resources to one device or disable LoRA"
        )
