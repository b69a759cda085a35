"""Where and how a training job runs: its resources (the config's, over built-in defaults), its
processes, its batch layout and the command that starts them. No heavy imports: the workflow's
rules import this module for job resources."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass

from cft.core.config import ConfigError
from cft.training import TrainingError

# A train job's resources where training.resources sets none.
DEFAULT_RESOURCES = {
    "nodes": 1,
    "gpus_per_node": 0,
    "cpu_processes_per_node": 1,
    "cpus_per_task": 2,
    "mem_mb": 8000,
    "runtime": 120,
    "per_device_batch_size": 8,
    "gpu_model": "",
}


def train_resources(config: dict, model: str) -> dict:
    """The train job's resources for ``model``: built-in defaults < ``default`` < per model."""
    configured = config["training"]["resources"]
    return {**DEFAULT_RESOURCES, **configured.get("default", {}), **configured.get(model, {})}


def curve_resources(config: dict, model: str) -> dict:
    """The knowledge-curve job's resources: the train job's, on one device of one node (one
    GPU when the model trains on GPUs). Its scorer is a callback in the training process, so
    training runs in that one process, with the same global batch (more accumulation)."""
    resources = train_resources(config, model)
    return {
        **resources,
        "nodes": 1,
        "gpus_per_node": min(resources["gpus_per_node"], 1),
        "cpu_processes_per_node": 1,
    }


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


def rendezvous_host() -> str:
    """The first node of the SLURM allocation (where the job script runs and torchrun's c10d
    store listens), as every node names it; this host outside SLURM."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if nodelist:
        try:
            names = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            if names:
                return names[0]
        except (OSError, subprocess.CalledProcessError):
            pass
    return socket.gethostname()


def torchrun_command(
    nodes: int, procs: int, *, host: str = "", port: int = 0, run_id: str = ""
) -> list:
    """torchrun for ``procs`` processes on each of ``nodes`` nodes (c10d rendezvous at
    ``host:port`` when there are several)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}"]
    if nodes == 1:
        return [*torchrun, "--standalone"]
    return [
        *torchrun,
        f"--nnodes={nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:{port}",
        f"--rdzv-id={run_id}",
    ]


def launch_command(
    resources: dict,
    *,
    host: str | None = None,
    port: int | None = None,
    in_allocation: bool | None = None,
) -> list:
    """The command that starts the training processes (append ``-m cft.training --job ...``).

    One process: the current Python. One node with several: ``torchrun --standalone`` (which
    picks its own free port). Several nodes (a SLURM allocation with one task per node):
    ``srun torchrun`` with c10d rendezvous on the allocation's first node, where the job script
    runs. Inside a SLURM job (``in_allocation``, default: ``SLURM_JOB_ID`` is set) one node's
    processes start as a job step of their own too: ``scancel --signal`` and sbatch's
    ``--signal`` reach a job's steps, so the trainer gets the signal (and checkpoints,
    ``training.checkpoint_on_signal``) while the Snakemake processes of the batch step wait
    for it. The step states its CPUs, GPUs and memory per node: since SLURM 22.05 srun does
    not inherit --cpus-per-task from the allocation, and without it every node's workers share
    one core.
    """
    nodes, procs = resources["nodes"], processes_per_node(resources)
    if in_allocation is None:
        in_allocation = "SLURM_JOB_ID" in os.environ
    if nodes == 1:
        local = [sys.executable] if procs <= 1 else torchrun_command(1, procs)
        return [*job_step(resources), *local] if in_allocation else local
    return [
        *job_step(resources),
        *torchrun_command(
            nodes,
            procs,
            host=host or rendezvous_host(),
            port=port or free_port(),
            run_id=os.environ.get("SLURM_JOB_ID", "cft-train"),
        ),
    ]


def job_step(resources: dict) -> list:
    """``srun`` for one task per node of the job, with the node's CPUs, GPUs and memory; its
    tasks die together (``--kill-on-bad-exit``)."""
    nodes, gres = resources["nodes"], gres_of(resources)
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={resources['cpus_per_task']}",
        *([f"--gres={gres}"] if gres else []),
        f"--mem={resources['mem_mb']}M",
        "--kill-on-bad-exit=1",
    ]


@dataclass(frozen=True)
class Parallelism:
    """How the job's processes share the work: one process, DDP, or FSDP2."""

    world_size: int
    fsdp: bool
    cuda: bool
    replicas: int = 1  # HSDP: the model is sharded within each of this many replica groups

    @property
    def cpu_fsdp(self) -> bool:
        return self.fsdp and not self.cuda

    @property
    def mesh(self) -> tuple[int, int] | None:
        """FSDP2's device mesh as (replicate, shard); None without FSDP."""
        return (self.replicas, self.world_size // self.replicas) if self.fsdp else None


def parallelism_of(
    recipe, world: int, *, cuda: bool, launched: bool = False, nodes: int = 1
) -> Parallelism:
    """FSDP2 on several devices unless the recipe says ``fsdp: no_shard`` (then DDP). One GPU
    started by torchrun (``launched``: a process group exists) shards over a 1-rank mesh, the
    same code path as the cluster's jobs (bench/gpu_check.py runs it so); a plain process
    trains without FSDP. Across ``nodes`` > 1, ``multi_node_sharding: hybrid`` shards within
    each node and replicates across them (HSDP); ``full`` shards over every device."""
    fsdp = (world > 1 or (cuda and launched)) and recipe.fsdp != "no_shard"
    hybrid = fsdp and nodes > 1 and recipe.multi_node_sharding == "hybrid"
    return Parallelism(world, fsdp=fsdp, cuda=cuda, replicas=nodes if hybrid else 1)


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
