"""What each layer of a transformers model attends over, read once from its (text) config: the
shared-context evaluation builds one mask per kind of layer from it, and the training FLOP
count gives a sliding layer its window's span instead of the whole sequence's."""

from __future__ import annotations

# transformers' names of the layer kinds (``config.layer_types``); others (chunked, linear
# attention) are passed through for the callers to refuse.
FULL, SLIDING = "full_attention", "sliding_attention"


def layer_attention(config) -> tuple[tuple[str, int | None], ...]:
    """(kind, window) of every layer of the model of ``config`` (a multimodal wrapper's text
    model): the window in tokens, None for full attention. Models without per-layer types
    slide in every layer where the config names a window (Mistral v0.1); Gemma-2/3 and Qwen
    with ``use_sliding_window`` name each layer's kind."""
    text = config.get_text_config()
    window = getattr(text, "sliding_window", None) or None
    kinds = getattr(text, "layer_types", None)
    if not kinds:
        return ((SLIDING if window else FULL, window),) * text.num_hidden_layers
    return tuple((kind, window if kind == SLIDING else None) for kind in kinds)


def sliding_window(config) -> int | None:
    """The window of the model's sliding layers; None where every layer attends fully."""
    return next((window for _, window in layer_attention(config) if window), None)
