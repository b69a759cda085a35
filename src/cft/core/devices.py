"""The device a job computes on: CPU when it asked for no GPU, CUDA when it did, and a loud
error (naming the job and the config key) when a GPU job sees no CUDA device, instead of a
silent fall-back to a CPU run that would take days or change the numbers."""

from __future__ import annotations

import functools
import os

from cft.core.errors import CftError


class DeviceError(CftError, RuntimeError):
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


# bf16 is chosen on a CPU only where its matmuls beat fp32's by this factor on the job's own
# threads: AVX512-bf16 alone is no guarantee (measured: 2.2x fp32 on a Zen 4 EPYC, 0.54x on a
# Xeon whose hypervisor hides AMX), and the margin keeps the choice stable on a noisy machine.
BF16_MIN_SPEEDUP = 1.25
# The probe: square matmuls of about a small model's training shapes, best of a few.
PROBE_SIZE = 1024
PROBE_REPEATS = 5


def matmul_flops(
    dtype, size: int = PROBE_SIZE, repeats: int = PROBE_REPEATS, *, shape: tuple | None = None
) -> float:
    """FLOP/s of the best of ``repeats`` square ``size`` matmuls (or of ``shape``, (m, k, n):
    m x k times k x n) in ``dtype`` on this process's CPU threads (after one untimed warm-up:
    thread pool, kernel selection)."""
    import time

    import torch

    m, k, n = shape or (size, size, size)
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


def bf16_verdict(features: list[str], bf16_flops: float, fp32_flops: float) -> tuple[bool, str]:
    """Whether a CPU with bf16 instructions ``features`` should compute in bf16, given its
    measured matmul FLOP/s in each dtype; and the reason, figures included."""
    speedup = bf16_flops / fp32_flops
    fast = speedup >= BF16_MIN_SPEEDUP
    return fast, (
        f"cpu has {' and '.join(features)}; bf16 matmuls run at {speedup:.2f}x fp32's here "
        f"({bf16_flops / 1e12:.3f} vs {fp32_flops / 1e12:.3f} TFLOP/s), "
        f"{'at least' if fast else 'under'} the {BF16_MIN_SPEEDUP}x that bf16 needs"
    )


@functools.cache
def native_bf16(*, cuda: bool) -> tuple[bool, str]:
    """Whether this machine computes bf16 matmuls natively and faster than fp32, and what says
    so. On a CPU: torch's own feature probes (cpuinfo) for AMX tiles or AVX512-bf16 (without
    them bf16 is emulated, far slower, and not timed), then a matmul timing of both dtypes.
    Measured once per process."""
    import torch

    if cuda:
        supported = torch.cuda.is_bf16_supported()
        return supported, f"{torch.cuda.get_device_name()} {'has' if supported else 'lacks'} bf16"
    probes = {
        "amx": getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)(),
        "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)(),
    }
    found = [name for name, present in probes.items() if present]
    if not found:
        return False, "cpu has neither AMX nor AVX512-bf16"
    return bf16_verdict(found, matmul_flops(torch.bfloat16), matmul_flops(torch.float32))


def native_dtype(*, cuda: bool) -> tuple[str, str]:
    """bfloat16 where the hardware computes it natively, else float32; and why."""
    native, reason = native_bf16(cuda=cuda)
    return ("bfloat16" if native else "float32"), reason
