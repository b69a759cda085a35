"""The in-context regressor (a GPT-2 backbone with linear read-in and read-out) and its
metrics: excess loss and gradient alignment."""

from __future__ import annotations

import torch
from torch import nn

from cft.synthetic.data import Batch, Scale, baseline_mse, true_gradient


class InContextRegressor(nn.Module):
    """GPT-2 backbone with linear read-in and read-out, predicting y at every x position."""

    def __init__(self, n_dims: int, n_positions: int, n_embd: int, n_layer: int, n_head: int):
        from transformers import GPT2Config, GPT2Model

        super().__init__()
        config = GPT2Config(
            n_positions=n_positions,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            use_cache=False,
        )
        self.n_dims = n_dims
        self.read_in = nn.Linear(n_dims, n_embd)
        self.backbone = GPT2Model(config)
        self.read_out = nn.Linear(n_embd, 1)

    @staticmethod
    def interleave(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        batch, n, d = xs.shape
        ys_wide = torch.cat([ys[..., None], xs.new_zeros(batch, n, d - 1)], dim=2)
        return torch.stack((xs, ys_wide), dim=2).reshape(batch, 2 * n, d)

    def forward(self, xs, ys, attention_mask=None):
        embeds = self.read_in(self.interleave(xs, ys))
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask)
        return self.read_out(hidden.last_hidden_state)[:, ::2, 0]  # predictions at the x's


def make_model(scale: Scale, seed: int) -> InContextRegressor:
    torch.manual_seed(seed)
    # positions: 2 tokens per point, context plus target half when fine-tuning
    return InContextRegressor(
        scale.n_dims, 4 * scale.n_points, scale.n_embd, scale.n_layer, scale.n_head
    )


def target_predictions(model, batch: Batch):
    return model(batch.xs, batch.ys, batch.attention_mask)[:, batch.n_context :]


def gradient_alignment(model, batch: Batch, task: str, reference: str = "task") -> float:
    """Mean cosine between d(last prediction)/d(last x) and the true gradient of g there.

    The x's are one input: where the context repeats them (CFT, NEG-CFT), the derivative
    counts both places the last x appears, as for a model fed the x's once."""
    query = batch.xs[:, batch.n_context :].clone().requires_grad_(True)
    context = query if batch.context_repeats_x else batch.xs[:, : batch.n_context]
    preds = model(torch.cat([context, query], dim=1), batch.ys, batch.attention_mask)
    (grad,) = torch.autograd.grad(preds[:, -1].sum(), query)
    # reference "polynomial": the authors' public metric, (1 + 2 w.x) w whatever the task.
    true = true_gradient(
        task if reference == "task" else "polynomial", batch.xs[:, -1], batch.w, batch.v
    )
    return float(nn.functional.cosine_similarity(grad[:, -1], true, dim=1).mean())


def evaluate(model, batch: Batch, task: str, scale: Scale, reference: str = "task") -> dict:
    model.eval()
    with torch.no_grad():
        errors = (target_predictions(model, batch) - batch.ys[:, batch.n_context :]) ** 2
    alignment = gradient_alignment(model, batch, task, reference)
    model.train()
    mse = float(errors.mean())
    return {
        "mse": mse,
        "excess_loss": mse / baseline_mse(scale.n_dims, scale.n_points),
        "alignment": alignment,
        "mse_by_points": errors.mean(dim=0).tolist(),
    }
