"""The device a job computes on: CPU when it asked for no GPU, CUDA when it did, and a loud
error (naming the job and the config key) when a GPU job sees no CUDA device, instead of a
silent fall-back to a CPU run that would take days or change the numbers."""

from __future__ import annotations

import os


class DeviceError(RuntimeError):
    """A job that asked for GPUs sees none."""


def job_device(gpus: int, job: str, key: str) -> str:
    """``"cpu"`` for ``gpus == 0``, else ``"cuda"`` once CUDA is confirmed visible."""
    if not gpus:
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(
            f"{job}: {key} = {gpus} asks for GPU(s), but this process sees no CUDA device "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch "
            f"{torch.__version__}); check the job's --gres and that torch is a CUDA build, or "
            f"set {key} to 0 to run on CPU"
        )
    return "cuda"
