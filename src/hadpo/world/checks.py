"""What the demo must show (issue 10), checked on the measured numbers: the paper's signature in miniature and
what each ablation must show. Each check is computed from the measured figures, never tuned."""

from __future__ import annotations

from hadpo.world.report import lookup, recall_key


def signature_checks(base: dict, hadpo: dict) -> dict[str, bool]:
    """The paper's signature in miniature: each check is computed from the measured numbers, never tuned."""
    adv, adv_after = base["pope"]["adversarial"], hadpo["pope"]["adversarial"]
    rnd, rnd_after = base["pope"]["random"], hadpo["pope"]["random"]
    words, words_after = base["shr"]["words_per_image"], hadpo["shr"]["words_per_image"]

    def relative_drop(before: float, after: float) -> float:
        return (before - after) / before if before else 0.0

    return {
        "base: POPE random accuracy >= 85 %": rnd["accuracy"] >= 0.85,
        "base: POPE adversarial accuracy <= 65 % with yes-ratio >= 80 %": adv["accuracy"] <= 0.65
        and adv["yes_ratio"] >= 0.80,
        "base: CHAIRs >= 10 %": base["chair"]["chair_s"] >= 0.10,
        "base: object coverage >= 90 %": base["coverage"] >= 0.90,
        "HA-DPO: POPE adversarial accuracy >= 90 % and +25 points": adv_after["accuracy"] >= 0.90
        and adv_after["accuracy"] - adv["accuracy"] >= 0.25,
        "HA-DPO: POPE adversarial yes-ratio within 40-60 %": 0.40 <= adv_after["yes_ratio"] <= 0.60,
        "HA-DPO: POPE random accuracy within 3 points of the base or better": rnd_after["accuracy"]
        >= rnd["accuracy"] - 0.03,
        "HA-DPO: CHAIRs down >= 70 % relative": relative_drop(base["chair"]["chair_s"], hadpo["chair"]["chair_s"])
        >= 0.70,
        "HA-DPO: SHR down >= 50 % relative": relative_drop(base["shr"]["shr"], hadpo["shr"]["shr"]) >= 0.50,
        "HA-DPO: words per description within -15 % of the base": words_after >= 0.85 * words,
        "HA-DPO: object coverage within -3 points": hadpo["coverage"] >= base["coverage"] - 0.03,
        "HA-DPO: held-out colour and count accuracy at most 2 points below the base": all(
            hadpo["heldout"][k] >= base["heldout"][k] - 0.02 for k in base["heldout"]
        ),
    }


def ablation_checks(models: dict[str, dict]) -> dict[str, bool]:
    """What the ablations must show, where they ran: without the SFT term the descriptions collapse (half the
    base's words or fewer, or 20 points of coverage lost); without QA pairs the yes/no answers stay as broken
    as the base's (POPE adversarial accuracy <= 65 %)."""
    base, checks = models["base"], {}
    if "no_sft" in models:
        run = models["no_sft"]
        checks["ablation no_sft: descriptions collapse"] = (
            run["shr"]["words_per_image"] <= 0.5 * base["shr"]["words_per_image"]
            or run["coverage"] <= base["coverage"] - 0.20
        )
    if "no_qa" in models:
        checks["ablation no_qa: POPE adversarial accuracy stays <= 65 %"] = (
            models["no_qa"]["pope"]["adversarial"]["accuracy"] <= 0.65
        )
    return checks


def recipe_targets(base: dict, model: dict) -> dict[str, bool]:
    """Issue 19's bar for a recipe that fixes the co-occurrence "yes" without learning to say "No.": adversarial
    accuracy at 90 % while recall (POPE's three questions per image, every object of a scene asked: the suite's
    `pope_<n>`, not met where it was not asked) stays within 5 points of the base, random accuracy at most 1 point
    lower, held-out count within 3 points, and CHAIRs down to 40 % of the base's."""
    key = recall_key(base)
    recall = (
        (None, None)
        if key is None
        else (lookup(base, f"{key}.adversarial.recall"), lookup(model, f"{key}.adversarial.recall"))
    )
    return {
        "POPE adversarial accuracy >= 90 %": model["pope"]["adversarial"]["accuracy"] >= 0.90,
        f"recall ({key[5:] if key else 3} questions per image) within 5 points of the base": None not in recall
        and recall[1] >= recall[0] - 0.05,
        "POPE random accuracy >= the base's - 1 point": model["pope"]["random"]["accuracy"]
        >= base["pope"]["random"]["accuracy"] - 0.01,
        "held-out count accuracy within 3 points": model["heldout"]["count"] >= base["heldout"]["count"] - 0.03,
        "CHAIRs <= 40 % of the base's": model["chair"]["chair_s"] <= 0.40 * base["chair"]["chair_s"],
    }
