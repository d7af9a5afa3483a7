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


# --- the loss types after HA-DPO, the list with weights, HSA-DPO's pair weights, mDPO's terms ---------------------
# Same two pairs: chosen log-ratios c = (1, 0), rejected log-ratios r = (-1, 0), beta = 0.5. With sp(x) = log(1 + e^x):
# sp(-0.5) = 0.47407698, sp(0.5) = 0.97407698, sigmoid(0.5) = 0.62245933, sigmoid(1) = 0.73105858.
SP_M05, SP_05 = 0.47407698, 0.97407698
SIG_05, SIG_1 = 0.62245933, 0.73105858


@pytest.mark.parametrize(
    "loss_type, eps, expected",
    [
        # bco_pair: sp(-beta c) + sp(beta r) = 2 sp(-0.5); at c = r = 0: 2 ln 2
        ("bco_pair", 0.0, [2 * SP_M05, 2 * LN2]),
        # nca_pair: sp(-0.5) + sp(0.5) / 2 + sp(-0.5) / 2 = 1.19815397; at 0: ln 2 + ln 2 / 2 + ln 2 / 2
        ("nca_pair", 0.0, [SP_M05 + SP_05 / 2 + SP_M05 / 2, 2 * LN2]),
        # sppo_hard: (c - 1)^2 + (r + 1)^2 = 0 and (0 - 1)^2 + (0 + 1)^2 = 2
        ("sppo_hard", 0.0, [0.0, 2.0]),
        # apo_zero: 1 - sigmoid(0.5) + sigmoid(-0.5) = 2 - 2 * 0.62245933; at 0: 1 - 1/2 + 1/2
        ("apo_zero", 0.0, [2 - 2 * SIG_05, 1.0]),
        # apo_down: sigmoid(0.5) + 1 - sigmoid(beta h = 1); at 0: 1/2 + 1 - 1/2
        ("apo_down", 0.0, [SIG_05 + 1 - SIG_1, 1.0]),
        # exo_pair, eps 0.1: q = (sigmoid(1), sigmoid(-1)) against p = (0.9, 0.1):
        # 0.73105858 (-0.31326169 + 0.10536052) + 0.26894142 (-1.31326169 + 2.30258509) = 0.11408211;
        # at h = 0: 0.5 (ln 0.5 - ln 0.9) + 0.5 (ln 0.5 - ln 0.1) = 0.51082562
        ("exo_pair", 0.1, [0.11408211, 0.51082562]),
    ],
)
def test_loss_types_after_dpo_match_hand_worked_numbers(loss_type, eps, expected):
    losses, _, _ = run(loss_type, eps)
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)


def test_a_list_of_loss_types_is_their_weighted_sum_mpo():
    from hadpo.train.loss import preference_losses

    out = preference_losses(
        POLICY_CHOSEN,
        POLICY_REJECTED,
        REF,
        REF,
        beta=0.5,
        loss_type=["sigmoid", "bco_pair", "sft"],
        loss_weights=[0.8, 0.2, 1.0],
        sft_loss=torch.tensor(2.0),
    )
    # 0.8 sp(-1) + 0.2 * 2 sp(-0.5) + 1.0 * 2 = 0.25060935 + 0.18963079 + 2; at h = 0: 0.8 ln 2 + 0.4 ln 2 + 2
    assert out.losses.tolist() == pytest.approx([2.44024014, 1.2 * LN2 + 2], abs=1e-6)
    assert set(out.terms) == {"sigmoid", "bco_pair", "sft"} and out.terms["sft"].tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="2 values for 3 loss types"):
        preference_losses(
            POLICY_CHOSEN, POLICY_REJECTED, REF, REF, loss_type=["sigmoid", "ipo", "hinge"], loss_weights=[1, 1]
        )
    with pytest.raises(ValueError, match="needs the chosen responses' NLL"):
        preference_losses(POLICY_CHOSEN, POLICY_REJECTED, REF, REF, loss_type="sft")


def test_one_loss_type_in_a_list_with_weight_one_is_that_loss_bit_for_bit():
    from hadpo.train.loss import preference_losses

    single, _, _ = run("sigmoid")
    listed = preference_losses(
        POLICY_CHOSEN, POLICY_REJECTED, REF, REF, beta=0.5, loss_type=["sigmoid"], loss_weights=[1.0]
    )
    assert torch.equal(single, listed.losses)


def test_severity_weights_scale_the_rejected_log_ratio_not_the_rewards():
    from hadpo.train.loss import preference_losses

    # HSA-DPO: h = c - w r with w = (0.5, 1): pair 0: 1 + 0.5 = 1.5, beta h = 0.75, sp(-0.75) = 0.38687101
    out = preference_losses(
        POLICY_CHOSEN, POLICY_REJECTED, REF, REF, beta=0.5, rejected_weights=torch.tensor([0.5, 1.0])
    )
    assert out.losses.tolist() == pytest.approx([0.38687101, LN2], abs=1e-6)
    assert out.chosen_rewards.tolist() == [0.5, 0.0] and out.rejected_rewards.tolist() == [-0.5, 0.0]


def test_mdpo_image_conditional_and_anchor_terms():
    from hadpo.train.loss import anchor_loss, image_conditional_loss

    # conditional: ((pi_w - ref_w) - (pi_w' - ref_w')) with the corrupted image's (-4, -2) and reference (-3, -2.5):
    # pair 0: 1 - (-1) = 2, beta 2 = 1 -> sp(-1) = 0.31326169; pair 1: 0 - 0.5 -> sp(0.25) = 0.82593942
    corrupted, ref_corrupted = torch.tensor([-4.0, -2.0]), torch.tensor([-3.0, -2.5])
    conditional = image_conditional_loss(POLICY_CHOSEN, REF, corrupted, ref_corrupted, beta=0.5)
    assert conditional.tolist() == pytest.approx([SOFTPLUS_M1, 0.82593942], abs=1e-6)
    # anchor: -log sigmoid(beta (pi_w - ref_w) - delta): delta 0 -> sp(-0.5), ln 2; delta 0.5 -> ln 2, sp(0.5)
    assert anchor_loss(POLICY_CHOSEN, REF, beta=0.5).tolist() == pytest.approx([SP_M05, LN2], abs=1e-6)
    assert anchor_loss(POLICY_CHOSEN, REF, beta=0.5, delta=0.5).tolist() == pytest.approx([LN2, SP_05], abs=1e-6)
