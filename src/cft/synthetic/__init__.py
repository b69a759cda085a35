"""The paper's synthetic experiment: in-context regression transformers fine-tuned with CPT, CFT
and NEG-CFT on composed function classes (after Garg et al. 2022 and the CFT authors' code).

A GPT-2 backbone with a linear read-in (R^d -> n_embd) and read-out (n_embd -> 1) reads the
sequence x_1, y_1, x_2, y_2, ... (each y written in the first coordinate of a d-vector) and
predicts y_k at the position of x_k.

1. Pretraining: linear functions f(x) = w.x, w, x ~ N(0, I_d), with a curriculum on the number
   of points (and optionally of active dimensions, as Garg et al.).
2. Fine-tuning on g, a composition with f: polynomial g = f + f^2, sumdot g = f + v.x, relu
   g = max(0, f). Every example draws w (and v) and n points x_1..x_n, and is shown under one
   of three conditions, the target half always being (x_i, g(x_i)):
   - ``cft``: the n linear pairs (x_i, f(x_i)) precede the n target pairs;
   - ``cpt`` (the authors' "uft"): the context half is zeroed and masked out of attention;
   - ``negcft``: the context pairs carry Gaussian noise instead of f(x_i): N(0, 1) as the
     authors (``neg_noise: unit``) or of f's variance d (``matched``).
   Loss and predictions are on the target half only.
3. Metrics every ``eval_every`` steps on a fixed evaluation batch: excess loss (target-half MSE
   over the linear-regression baseline sum_k max(d - k, 0) / n, i.e. 210/41 for d = 20,
   n = 41) and gradient alignment (cosine between the input gradient of the last prediction and
   the true direction grad g(x), e.g. (1 + 2 w.x) w for the polynomial), and after training the
   MSE by number of in-context examples.

Checkpoints every ``save_every`` steps; a killed run resumes from the last one. Batches are
drawn from a generator seeded by (seed, step), so a resumed run sees the same data.

Modules: ``data`` (function classes and the three conditions), ``model`` (the regressor and its
metrics), ``loop`` (the one resumable training loop), ``stages`` (pretraining and fine-tuning
runs), ``reference`` (the authors' curves), ``summary`` (table and figures), ``__main__``
(the CLI).

    python -m cft.synthetic pretrain --scale demo --seed 0 --out-dir results/synthetic/demo/...
"""

# The function classes and the fine-tuning conditions, by name (their owner is the core's
# vocabulary, cft.core.methods).
from cft.core.methods import SYNTHETIC_CONDITIONS as CONDITIONS
from cft.core.methods import SYNTHETIC_TASKS as TASKS

__all__ = ["CONDITIONS", "TASKS"]
