"""Knowledge-acquisition curves: checkpoints at evenly spaced steps, each scored by lm-eval with
its interval, from the untrained model at 0 tokens to the last step."""

from __future__ import annotations

import pytest

from cft.evaluation.knowledge_curve import save_steps_for


@pytest.mark.parametrize(
    ("blocks", "batch", "epochs", "points", "expected"),
    [(48, 4, 1, 3, 4), (25, 4, 4, 5, 5), (10, 4, 1, 5, 1), (48, 4, 0.5, 2, 3)],
)
def test_save_steps_give_the_requested_number_of_points(blocks, batch, epochs, points, expected):
    train_cfg = {"global_batch_size": batch, "epochs": epochs}
    assert save_steps_for(blocks, train_cfg, points) == expected
