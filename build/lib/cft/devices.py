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


def native_bf16(*, cuda: bool) -> tuple[bool, str]:
    """Whether this machine computes bf16 matmuls natively, and what says so."""
    import torch

    if cuda:
        supported = torch.cuda.is_bf16_supported()
        return supported, f"{torch.cuda.get_device_name()} {'has' if supported else 'lacks'} bf16"
    # torch's own CPU feature probes (cpuinfo): AMX tiles or AVX512-bf16 instructions.
    probes = {
        "amx": getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)(),
        "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)(),
    }
    found = [name for name, present in probes.items() if present]
    if found:
        return True, "cpu has " + " and ".join(found)
    return False, "cpu has neither AMX nor AVX512-bf16"


def native_dtype(*, cuda: bool) -> tuple[str, str]:
    """bfloat16 where the hardware computes it natively, else float32; and why."""
    native, reason = native_bf16(cuda=cuda)
    return ("bfloat16" if native else "float32"), reason
