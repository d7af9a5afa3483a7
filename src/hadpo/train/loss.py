"""The HA-DPO objective: DPO preference losses as a pure function of four log-prob tensors.

HA-DPO (arXiv 2311.16839, eq. 4) trains with the DPO loss of Rafailov et al. (arXiv 2305.18290, eq. 7) on
hallucination-aware pairs, plus gamma * L_sft on an auxiliary caption set (the trainer adds that term; this
module holds only the preference math).

Notation, for a batch of B pairs, all tensors of shape (B,):
    pi_w = log pi(y_w | x), pi_l = log pi(y_l | x)            policy log-probs of chosen / rejected responses
    ref_w = log pi_ref(y_w | x), ref_l = log pi_ref(y_l | x)  reference log-probs
    h = (pi_w - ref_w) - (pi_l - ref_l)                        the implicit reward margin, divided by beta
Log-probs are summed over response tokens (the paper's choice) or averaged (`logps_reduction: mean`); this
function does not care which, it only sees the four tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference losses and implicit rewards.

    Returns (losses, chosen_rewards, rejected_rewards), each (B,); rewards are beta * (pi - ref), detached.

    loss_type:
      sigmoid  -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)          DPO, arXiv 2305.18290 eq. 7
               (eps = label_smoothing > 0 gives conservative DPO, "cDPO")
      robust   (-(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)) / (1 - 2 eps)
                                                                  robust DPO, arXiv 2403.00409 eq. 8
      hinge    max(0, 1 - beta h)                                 SLiC-HF, arXiv 2305.10425 eq. 2
      ipo      (h - 1 / (2 beta))^2                               IPO, arXiv 2310.12036 eq. 17
               (the IPO paper averages log-probs over tokens: pair it with `logps_reduction: mean`)
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type '{loss_type}'; expected one of {', '.join(LOSS_TYPES)}")
    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    eps = label_smoothing
    if loss_type == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif loss_type == "robust":
        if not 0 <= eps < 0.5:
            raise ValueError(f"robust loss needs 0 <= label_smoothing < 0.5, got {eps}")
        losses = (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:  # ipo
        losses = (h - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards
