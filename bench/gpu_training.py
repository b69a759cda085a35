"""GPU training throughput and MFU of the project's own training code (cft.training).

Runs the project's Trainer (the same TrainingArguments, FSDP/precision set-up, token counting
and MFU arithmetic as a train job) on one CUDA device:

- ``mfu``: a ~1.1B Llama-architecture model (TinyLlama-1.1B shape: 22 layers, width 2048, GQA
  32/4 heads), random init, bf16 compute over fp32 master weights, sequence 4096, SDPA (or
  FlashAttention-2 when installed), random token blocks. Prints tokens/s, tokens/s per
  device and MFU (torchtitan's FLOPs convention, the device's dense bf16 peak), steady state
  after the warm-up steps. Target on H100/H200: MFU >= 50%.
- ``real``: one real bf16 training run of a converted model folder (e.g. the packaged
  SmolLM2, ``results/base_models/smollm2-135m-instruct``) on a tokenized dataset folder,
  through ``cft.training.run.train`` itself (needs ``datasets`` as well).

The ``mfu`` mode needs nothing beyond torch, transformers (with accelerate) and PyYAML.

    python bench/gpu_training.py mfu --steps 30 --micro-batch 2
    python bench/gpu_training.py real --model-dir results/base_models/smollm2-135m-instruct \\
        --tokenized results/tokenized/biomed/smollm2-135m-instruct/cft
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cft.config import DEFAULT_RESOURCES  # noqa: E402
from cft.training.launch import parallelism_of, plan_batch  # noqa: E402
from cft.training.metrics import flops_per_token, peak_flops, throughput_metrics  # noqa: E402
from cft.training.model import attention_implementation  # noqa: E402
from cft.training.recipe import Job, Recipe  # noqa: E402
from cft.training.run import train  # noqa: E402
from cft.training.trainer import make_trainer  # noqa: E402


def paper_training_config() -> dict:
    """config/paper.yaml's training section with the schema's defaults filled in (read with
    PyYAML alone: a bare GPU image may lack jsonschema and snakemake)."""
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    defaults = {
        key: spec["default"]
        for key, spec in schema["properties"]["training"]["properties"].items()
        if "default" in spec
    }
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    train = {**defaults, **paper["training"]}
    for section in ("lora", "divergence"):  # nested defaults, as the validator fills them
        nested = schema["properties"]["training"]["properties"][section]["properties"]
        train[section] = {k: v["default"] for k, v in nested.items()} | train.get(section, {})
    return train


class RandomBlocks:
    """Fixed-length blocks of random token ids, every token a loss token (a torch-style
    dataset: no `datasets` needed)."""

    def __init__(self, n: int, seq_len: int, vocab: int, seed: int = 0):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, seq_len), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        ids = self.ids[index].numpy()
        return {"input_ids": ids, "labels": ids, "attention_mask": ids * 0 + 1}


class StepTimer:
    """Per-step wall times (CUDA-synchronised), for a steady-state rate after warm-up."""

    def __init__(self):
        self.times = []

    def callback(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timer.times.append(time.perf_counter())

        return Callback()


def mfu(args) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cuda = not args.smoke
    if cuda and not torch.cuda.is_available():
        sys.exit("bench/gpu_training.py mfu needs a CUDA device (--smoke checks the code on CPU)")
    if args.smoke:  # the same code path at a toy shape on CPU
        args.seq_len, args.micro_batch, args.accumulation = 64, 2, 2
        args.steps, args.warmup = 3, 1
    train = {
        **paper_training_config(),
        "max_seq_len": args.seq_len,
        "global_batch_size": args.micro_batch * args.accumulation,
        "activation_checkpointing": args.activation_checkpointing,
        "save_steps": 10**9,
        "eval_at_end": False,
        "logging_steps": 10**9,
        "warmup_ratio": 0.0,
    }
    resources = {
        **DEFAULT_RESOURCES,
        "gpus_per_node": int(cuda),
        "per_device_batch_size": args.micro_batch,
    }
    config = {"seed": 0, "training": train, "models": {"bench": {"dtype": "bfloat16"}}}
    scratch = Path(tempfile.mkdtemp(prefix="cft-gpu-bench-"))
    job = Job(
        config=config,
        domain="bench",
        model="bench",
        method="cpt",
        tokenized_dir="",
        base_model_dir="",
        out_dir=str(scratch / "model"),
        checkpoint_dir=str(scratch / "checkpoints"),
        resources=resources,
    )
    shape = (
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
        if args.smoke
        else {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22}
    )
    model_config = LlamaConfig(
        vocab_size=32000,
        num_attention_heads=32 if not args.smoke else 4,
        num_key_value_heads=4,
        max_position_embeddings=args.seq_len,
        tie_word_embeddings=False,
        **shape,
    )
    attn = attention_implementation(args.attn, cuda=cuda)
    model_config._attn_implementation = attn
    torch.manual_seed(0)
    model = LlamaForCausalLM(model_config)  # fp32 master weights, as a train job loads them
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    n_embedding = model.get_input_embeddings().weight.numel()
    plan = plan_batch(train["global_batch_size"], 1, args.micro_batch)
    parallel = parallelism_of(Recipe.of(config), 1, cuda=cuda)
    steps = args.warmup + args.steps
    data = RandomBlocks(steps * plan.global_batch_size, args.seq_len, model_config.vocab_size)
    timer = StepTimer()
    trainer = make_trainer(job, model, data, plan, parallel, callbacks=[timer.callback()])
    trainer.args.report_to = []
    trainer.args.max_steps = steps
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steady = timer.times[args.warmup - 1 :]
    seconds = steady[-1] - steady[0]
    tokens = (len(steady) - 1) * plan.global_batch_size * args.seq_len
    per_token = flops_per_token(
        n_params,
        n_embedding,
        model_config.num_hidden_layers,
        model_config.hidden_size,
        args.seq_len,
    )
    device = torch.cuda.get_device_name() if cuda else "cpu (smoke run)"
    speed = throughput_metrics(
        tokens=tokens,
        loss_tokens=tokens,
        loop_seconds=seconds,
        world=1,
        flops_per_token=per_token,
        peak_flops_per_device=peak_flops(device),
    )
    return {
        "mode": "mfu",
        "device": device,
        "parameters": n_params,
        "embedding_parameters": n_embedding,
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "accumulation": args.accumulation,
        "activation_checkpointing": args.activation_checkpointing,
        "attn_implementation": attn,
        "precision": "bf16 compute, fp32 master weights (autocast)",
        "steady_steps": len(steady) - 1,
        "seconds": seconds,
        **speed,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "versions": versions(),
        "command": " ".join(sys.argv),
    }


def real(args) -> dict:
    """One train job of a converted model on a tokenized folder, bf16, through train()."""
    config = {
        "seed": 1234,
        "training": {**paper_training_config(), "precision": "bf16", "epochs": 1},
        "models": {"bench": {"dtype": "bfloat16"}},
    }
    config["training"].update(
        {
            "global_batch_size": args.micro_batch,
            "max_seq_len": 256,
            "save_steps": 10**9,
            "activation_checkpointing": False,
            "learning_rate": 2e-4,
        }
    )
    scratch = Path(tempfile.mkdtemp(prefix="cft-gpu-real-"))
    job = Job(
        config=config,
        domain="bench",
        model="bench",
        method="cft",
        tokenized_dir=args.tokenized,
        base_model_dir=args.model_dir,
        out_dir=str(scratch / "model"),
        checkpoint_dir=str(scratch / "checkpoints"),
        resources={
            **DEFAULT_RESOURCES,
            "gpus_per_node": 1,
            "per_device_batch_size": args.micro_batch,
        },
    )
    metrics = train(job)
    keep = (
        "device",
        "optimizer_steps",
        "tokens_per_s",
        "mfu",
        "precision",
        "final_loss",
        "eval_loss",
        "peak_memory_mb",
    )
    return {"mode": "real", **{k: metrics[k] for k in keep}, "versions": versions()}


def versions() -> dict:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    bench = sub.add_parser("mfu", help="~1.1B Llama, random init, seq 4096")
    bench.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--seq-len", type=int, default=4096)
    bench.add_argument("--micro-batch", type=int, default=2)
    bench.add_argument("--accumulation", type=int, default=4)
    bench.add_argument("--activation-checkpointing", action="store_true")
    bench.add_argument("--attn", default="auto", choices=["auto", "sdpa", "flash_attention_2"])
    bench.add_argument("--smoke", action="store_true", help="toy shape on CPU: checks the code")
    run = sub.add_parser("real", help="a converted model on a tokenized folder, via train()")
    run.add_argument("--model-dir", required=True)
    run.add_argument("--tokenized", required=True)
    run.add_argument("--micro-batch", type=int, default=8)
    args = parser.parse_args()
    result = mfu(args) if args.mode == "mfu" else real(args)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
