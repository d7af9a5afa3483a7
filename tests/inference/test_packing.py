"""Packed rows (hadpo.inference.packing): the block mask and the positions, on hand-made branch ids."""

import pytest
import torch

from hadpo.inference.packing import block_attention_mask, branch_positions


def test_block_mask_lets_a_branch_see_the_prefix_and_itself_only():
    # columns: prefix, prefix, chosen branch x2, rejected branch x2, padding
    branch_ids = torch.tensor([[0, 0, 1, 1, 2, 2, -1]])
    visible = block_attention_mask(branch_ids)[0, 0].int().tolist()
    assert visible == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0],  # the rejected branch does not see the chosen one
        [1, 1, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],  # padding sees itself only (no empty row: no NaN)
    ]
    additive = block_attention_mask(branch_ids, "eager", torch.float32)[0, 0]
    assert torch.equal(additive == 0, torch.tensor(visible, dtype=torch.bool))
    assert additive.min().item() == torch.finfo(torch.float32).min
    with pytest.raises(ValueError, match="flash_attention_2.*unpacked"):
        block_attention_mask(branch_ids, "flash_attention_2")


def test_each_branch_continues_the_prefix_positions():
    batch = {"branch_ids": torch.tensor([[0, 0, 1, 1, 1, 2, 2, -1], [0, 1, 1, 2, 2, 2, -1, -1]])}
    assert branch_positions(torch.nn.Linear(1, 1), batch).tolist() == [
        [0, 1, 2, 3, 4, 2, 3, 0],
        [0, 1, 2, 1, 2, 3, 0, 0],
    ]
