"""Step-by-step parity of a trainer with the independent oracle (tests/oracle.py)."""

import pytest
import torch
from oracle import oracle_loss

from yapo_core.encoding import collate


def check_steps_against_the_oracle(trainer, tokenizer, model, sae, kind, layer, position, steps):
    """Each step's loss and vector gradient against the oracle, with the direction d drawn here
    (both signs), so a trainer that ignored or mis-drew d would fail."""
    directions = [1.0, -1.0, -1.0, 1.0, -1.0][:steps]
    draws = iter(directions)
    trainer.draw_direction = lambda: next(draws)
    for direction in directions:
        pairs = trainer.batch_for_step(trainer.step)
        v = trainer.v.detach().clone().requires_grad_(True)
        batch = collate(pairs, tokenizer.pad_token_id)
        expected = oracle_loss(model, sae, kind, layer, v, direction, batch, position=position)
        expected.backward()
        metrics = trainer.run_step()
        assert metrics.multiplier == direction
        assert metrics.loss == pytest.approx(float(expected.detach()), rel=1e-4, abs=1e-6)
        # relative tolerance 1e-4 on the gradient vector (elementwise ratios of near-zero
        # entries are float noise)
        assert (trainer.v.grad - v.grad).norm() <= 1e-4 * v.grad.norm()
        torch.testing.assert_close(trainer.v.grad, v.grad, rtol=1e-4, atol=1e-4 * float(v.grad.abs().max()))
