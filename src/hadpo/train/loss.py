"""The HA-DPO objective and the preference methods after it: pure functions of log-prob tensors.

HA-DPO (arXiv 2311.16839, eq. 4) trains with the DPO loss of Rafailov et al. (arXiv 2305.18290, eq. 7) on
hallucination-aware pairs, plus gamma * L_sft on an auxiliary caption set (the trainer adds that term; this
module holds only the preference math).

Notation, for a batch of B pairs, all tensors of shape (B,):
    pi_w = log pi(y_w | x), pi_l = log pi(y_l | x)            policy log-probs of chosen / rejected responses
    ref_w = log pi_ref(y_w | x), ref_l = log pi_ref(y_l | x)  reference log-probs
    s_w = c_w (pi_w - ref_w), s_l = c_l (pi_l - ref_l)         scores: log-ratios times per-pair weights c (1 unless
                                                               `pair_weighting`; HSA-DPO's severity weights)
    h = s_w - s_l                                              the implicit reward margin, divided by beta
Log-probs are summed over response tokens (the paper's choice) or averaged (`logps_reduction: mean`), with or
without per-token weights (RLHF-V's dense DPO); these functions do not care which, they only see the tensors.

`preference_losses` computes one or several loss types with weights (TRL's `loss_type` list and `loss_weights`:
MPO is ["sigmoid", "bco_pair", "sft"] with [0.8, 0.2, 1.0]); `image_conditional_loss` and `anchor_loss` are mDPO's
two extra terms (arXiv 2406.11839, eq. 5 and 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_TYPES = (
    "sigmoid",
    "ipo",
    "hinge",
    "robust",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "apo_zero",
    "apo_down",
    "sft",
)


@dataclass
class PreferenceLosses:
    """`losses` (B,): the weighted sum of the terms; `terms`: each loss type's own per-pair losses (B,); rewards
    beta * (pi - ref), detached (HSA-DPO's weights do not enter them)."""

    losses: torch.Tensor
    terms: dict[str, torch.Tensor]
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def pair_loss(
    loss_type: str,
    chosen_scores: torch.Tensor,
    rejected_scores: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    sft_loss: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair losses (B,) of one type from the scores s_w, s_l (h = s_w - s_l); names and formulas as TRL's:

    sigmoid    -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)    DPO, arXiv 2305.18290 eq. 7
               (eps = label_smoothing > 0 gives conservative DPO, "cDPO")
    robust     (-(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)) / (1 - 2 eps)
                                                                 robust DPO, arXiv 2403.00409 eq. 8
    hinge      max(0, 1 - beta h)                                SLiC-HF, arXiv 2305.10425 eq. 2
    ipo        (h - 1 / (2 beta))^2                              IPO, arXiv 2310.12036 eq. 17 (TRL averages the
               log-probs over tokens first: that is `logps_reduction: mean` here)
    exo_pair   KL(q || p) with q = (sigmoid(beta h), sigmoid(-beta h)), p = (1 - eps, eps) (eps > 0)
                                                                 EXO, arXiv 2402.00856 eq. 16
    nca_pair   -log sigmoid(beta s_w) - 1/2 log sigmoid(-beta s_w) - 1/2 log sigmoid(-beta s_l)
                                                                 NCA, arXiv 2402.05369
    bco_pair   -log sigmoid(beta s_w) - log sigmoid(-beta s_l)   BCO as TRL's pairwise form (MPO's quality term)
    sppo_hard  (s_w - 1 / (2 beta))^2 + (s_l + 1 / (2 beta))^2   SPPO, arXiv 2405.00675 (hard probabilities)
    apo_zero   1 - sigmoid(beta s_w) + sigmoid(beta s_l)          APO-zero, arXiv 2408.06266 eq. 7
    apo_down   sigmoid(beta s_w) + 1 - sigmoid(beta h)           APO-down, arXiv 2408.06266 eq. 8
    sft        `sft_loss`: the chosen responses' token-mean NLL over the batch (MPO's generation term),
               the same number for every pair
    """
    h = chosen_scores - rejected_scores
    eps = label_smoothing
    if loss_type == "sigmoid":
        return -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    if loss_type == "robust":
        if not 0 <= eps < 0.5:
            raise ValueError(f"robust loss needs 0 <= label_smoothing < 0.5, got {eps}")
        return (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    if loss_type == "hinge":
        return torch.relu(1 - beta * h)
    if loss_type == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    if loss_type == "exo_pair":
        if not 0 < eps < 1:
            raise ValueError(f"exo_pair needs 0 < label_smoothing < 1 (the target's epsilon), got {eps}")
        win, lose = torch.sigmoid(beta * h), torch.sigmoid(-beta * h)
        log_win, log_lose = F.logsigmoid(beta * h), F.logsigmoid(-beta * h)
        return win * (log_win - math.log1p(-eps)) + lose * (log_lose - math.log(eps))
    if loss_type == "nca_pair":
        return (
            -F.logsigmoid(beta * chosen_scores)
            - 0.5 * F.logsigmoid(-beta * chosen_scores)
            - 0.5 * F.logsigmoid(-beta * rejected_scores)
        )
    if loss_type == "bco_pair":
        return -F.logsigmoid(beta * chosen_scores) - F.logsigmoid(-beta * rejected_scores)
    if loss_type == "sppo_hard":
        return (chosen_scores - 0.5 / beta) ** 2 + (rejected_scores + 0.5 / beta) ** 2
    if loss_type == "apo_zero":
        return 1 - torch.sigmoid(beta * chosen_scores) + torch.sigmoid(beta * rejected_scores)
    if loss_type == "apo_down":
        return torch.sigmoid(beta * chosen_scores) + 1 - torch.sigmoid(beta * h)
    if loss_type == "sft":
        if sft_loss is None:
            raise ValueError("loss_type 'sft' needs the chosen responses' NLL (sft_loss)")
        return sft_loss.expand_as(h)
    raise ValueError(f"unknown loss_type '{loss_type}'; expected one of {', '.join(LOSS_TYPES)}")


def preference_losses(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str | Sequence[str] = "sigmoid",
    loss_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    chosen_weights: torch.Tensor | None = None,
    rejected_weights: torch.Tensor | None = None,
    sft_loss: torch.Tensor | None = None,
) -> PreferenceLosses:
    """sum_k w_k * loss_k per pair, over the loss types `loss_type` (one name or a list) with `loss_weights`
    (default 1 each), as TRL sums them.

    chosen_weights / rejected_weights (B,): HSA-DPO's per-pair weights on the log-ratios (arXiv 2404.14233; its code
    `logits = c_w (pi_w - ref_w) - c_l (pi_l - ref_l)`, by default c_w = 1 and c_l = the rejected text's
    hallucination severity); None means 1."""
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    weights = [1.0] * len(types) if loss_weights is None else list(loss_weights)
    if len(weights) != len(types):
        raise ValueError(f"loss_weights has {len(weights)} values for {len(types)} loss types")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    chosen_scores = chosen_logratios if chosen_weights is None else chosen_weights * chosen_logratios
    rejected_scores = rejected_logratios if rejected_weights is None else rejected_weights * rejected_logratios
    terms = {
        name: pair_loss(
            name, chosen_scores, rejected_scores, beta=beta, label_smoothing=label_smoothing, sft_loss=sft_loss
        )
        for name in types
    }
    losses = sum(weight * terms[name] for name, weight in zip(types, weights))  # 1.0 * x + 0 is x, bit for bit
    return PreferenceLosses(losses, terms, beta * chosen_logratios.detach(), beta * rejected_logratios.detach())


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
    """Per-pair losses of one loss type and the implicit rewards: (losses, chosen_rewards, rejected_rewards),
    each (B,); rewards are beta * (pi - ref), detached. See `pair_loss` for the types."""
    out = preference_losses(
        policy_chosen_logps,
        policy_rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
    )
    return out.losses, out.chosen_rewards, out.rejected_rewards


def image_conditional_loss(
    policy_chosen_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    policy_corrupted_logps: torch.Tensor,
    ref_corrupted_logps: torch.Tensor,
    *,
    beta: float,
) -> torch.Tensor:
    """mDPO's conditional preference (arXiv 2406.11839 eq. 5): the chosen response given the real image m is
    preferred over the same response given a corrupted image m':
        -log sigmoid(beta ((pi(y_w | m) - ref(y_w | m)) - (pi(y_w | m') - ref(y_w | m'))))"""
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_corrupted_logps - ref_corrupted_logps)
    return -F.logsigmoid(beta * margin)


def anchor_loss(
    policy_chosen_logps: torch.Tensor, ref_chosen_logps: torch.Tensor, *, beta: float, delta: float = 0.0
) -> torch.Tensor:
    """mDPO's anchored preference (arXiv 2406.11839 eq. 6): the chosen reward kept above delta, so that DPO cannot
    lower the chosen likelihood along with the rejected one: -log sigmoid(beta (pi_w - ref_w) - delta)."""
    return -F.logsigmoid(beta * (policy_chosen_logps - ref_chosen_logps) - delta)
