"""DPO loss variants against numbers worked out by hand.

Two pairs, beta = 0.5:
  pair 0: policy (-1, -3), reference (-2, -2) -> h = (-1 + 2) - (-3 + 2) = 2, beta h = 1
  pair 1: policy (-2, -2), reference (-2, -2) -> h = 0
  -log sigmoid(1) = log(1 + e^-1) = 0.31326169, -log sigmoid(-1) = log(1 + e) = 1.31326169, -log sigmoid(0) =
  ln 2
"""

import math

import pytest
import torch

from hadpo.train.loss import dpo_loss

POLICY_CHOSEN = torch.tensor([-1.0, -2.0])
POLICY_REJECTED = torch.tensor([-3.0, -2.0])
REF = torch.tensor([-2.0, -2.0])
LN2 = math.log(2)
SOFTPLUS_M1 = 0.31326169  # -log sigmoid(1)
SOFTPLUS_1 = 1.31326169  # -log sigmoid(-1)


def run(loss_type, eps=0.0):
    return dpo_loss(POLICY_CHOSEN, POLICY_REJECTED, REF, REF, beta=0.5, loss_type=loss_type, label_smoothing=eps)


@pytest.mark.parametrize(
    "loss_type, eps, expected",
    [
        ("sigmoid", 0.0, [SOFTPLUS_M1, LN2]),
        # cDPO: 0.9 * 0.31326169 + 0.1 * 1.31326169 = 0.41326169
        ("sigmoid", 0.1, [0.41326169, LN2]),
        # robust: (0.9 * 0.31326169 - 0.1 * 1.31326169) / 0.8 = 0.18826169; at h = 0: (0.9 - 0.1) ln2 / 0.8 =
        # ln 2
        ("robust", 0.1, [0.18826169, LN2]),
        # hinge: max(0, 1 - 1) = 0 and max(0, 1 - 0) = 1
        ("hinge", 0.0, [0.0, 1.0]),
        # ipo: (h - 1 / (2 * 0.5))^2 = (2 - 1)^2 = 1 and (0 - 1)^2 = 1
        ("ipo", 0.0, [1.0, 1.0]),
    ],
)
def test_loss_variants_match_hand_worked_numbers(loss_type, eps, expected):
    losses, _, _ = run(loss_type, eps)
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)


def test_rewards_are_beta_times_policy_minus_reference_and_detached():
    chosen = POLICY_CHOSEN.clone().requires_grad_()
    losses, chosen_rewards, rejected_rewards = dpo_loss(chosen, POLICY_REJECTED, REF, REF, beta=0.5)
    assert chosen_rewards.tolist() == [0.5, 0.0]  # 0.5 * (-1 + 2), 0.5 * 0
    assert rejected_rewards.tolist() == [-0.5, 0.0]  # 0.5 * (-3 + 2)
    assert not chosen_rewards.requires_grad and losses.requires_grad
    # d/d(pi_w) of -log sigmoid(beta h) = -beta * sigmoid(-beta h): -0.5 * sigmoid(-1) = -0.13447071 at pair 0
    losses.sum().backward()
    assert chosen.grad.tolist() == pytest.approx([-0.13447071, -0.25], abs=1e-6)


def test_unknown_loss_type_and_bad_smoothing_are_errors():
    with pytest.raises(ValueError, match="unknown loss_type 'kto'"):
        run("kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        run("robust", 0.5)
