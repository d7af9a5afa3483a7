"""The demo's own measurements and checks on hand-made inputs: the share of POPE adversarial negatives that are
absent family members, words of chosen vs rejected texts, and the issue's checks on made-up numbers."""

from __future__ import annotations

from hadpo.records import ImageRecord, ObjectAnnotation, PopeQuestion, PreferencePair, write_jsonl
from hadpo.world.checks import ablation_checks, recipe_targets, signature_checks
from hadpo.world.config import WorldConfig
from hadpo.world.suite import family_share, words_per_text


def image(number: int, *names: str) -> ImageRecord:
    objects = [ObjectAnnotation(name=n, box=[0, 0, 16, 16]) for n in names]
    return ImageRecord(
        image_id=f"eval-{number}", path=f"images/eval-{number}.png", width=48, height=48, objects=objects, complete=True
    )


def question(number: int, image_number: int, name: str, label: str) -> PopeQuestion:
    return PopeQuestion(
        question_id=str(number),
        image=f"../images/eval-{image_number}.png",
        text=f"Is there a {name} in the image?",
        label=label,
        object=name,
    )


def test_family_share_counts_negatives_about_an_absent_family_member(tmp_path):
    world = WorldConfig()  # families: star/moon/sun/cloud, heart/diamond/club/spade, ...
    write_jsonl(tmp_path / "eval.jsonl", [image(0, "star", "moon", "sun"), image(1, "heart", "circle", "cross")])
    write_jsonl(
        tmp_path / "adversarial.jsonl",
        [
            question(1, 0, "star", "yes"),  # positives are not counted
            question(2, 0, "cloud", "no"),  # the absent sky member
            question(3, 0, "heart", "no"),  # another family
            question(4, 1, "club", "no"),  # heart's family
            question(5, 1, "flag", "no"),  # cross's family
            question(6, 1, "sun", "no"),
        ],
    )
    share = family_share(tmp_path / "adversarial.jsonl", tmp_path / "eval.jsonl", world)
    assert share == {"negatives": 5, "family_members": 3, "share": 3 / 5}


def test_words_per_text_reads_the_original_description_pairs(tmp_path):
    def pair(kind, chosen, rejected, rewrite_index=0):
        return PreferencePair(
            images=["a.png"],
            prompt="Describe.",
            chosen=chosen,
            rejected=rejected,
            kind=kind,
            image_id="a",
            pair_id=f"{kind}:{chosen}:{rewrite_index}",
            rewrite_index=rewrite_index,
        )

    write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            pair("desc", "one two", "one two three four"),
            pair("desc", "one two three four", "one two three four five six"),
            pair("desc", "a rewrite is not counted", "x", rewrite_index=1),
            pair("qa", "Yes.", "No."),
        ],
    )
    assert words_per_text(tmp_path / "pairs.jsonl") == {"chosen": 3.0, "rejected": 5.0}


def model(
    adversarial=0.5, adv_yes=0.97, random=0.9, chair=0.4, shr=0.4, words=40.0, coverage=0.92, colour=0.8, count=0.9
) -> dict:
    return {
        "pope": {
            "adversarial": {"accuracy": adversarial, "yes_ratio": adv_yes},
            "random": {"accuracy": random, "yes_ratio": 0.5},
        },
        "chair": {"chair_s": chair},
        "shr": {"shr": shr, "words_per_image": words},
        "coverage": coverage,
        "heldout": {"color": colour, "count": count},
    }


def test_signature_checks_follow_the_issue_thresholds():
    base = model()
    good = model(
        adversarial=0.92,
        adv_yes=0.5,
        random=0.89,
        chair=0.1,
        shr=0.2,
        words=34.1,
        coverage=0.90,
        colour=0.785,
        count=0.885,
    )
    assert all(signature_checks(base, good).values())
    bad = signature_checks(
        base,
        model(
            adversarial=0.74,
            adv_yes=0.35,
            random=0.86,
            chair=0.2,
            shr=0.3,
            words=33.0,
            coverage=0.88,
            colour=0.77,
            count=0.9,
        ),
    )
    assert [name for name, ok in bad.items() if not ok] == [
        "HA-DPO: POPE adversarial accuracy >= 90 % and +25 points",
        "HA-DPO: POPE adversarial yes-ratio within 40-60 %",
        "HA-DPO: POPE random accuracy within 3 points of the base or better",
        "HA-DPO: CHAIRs down >= 70 % relative",
        "HA-DPO: SHR down >= 50 % relative",
        "HA-DPO: words per description within -15 % of the base",
        "HA-DPO: object coverage within -3 points",
        "HA-DPO: held-out colour and count accuracy at most 2 points below the base",
    ]
    weak_base = signature_checks(model(adversarial=0.7, chair=0.05, coverage=0.8, random=0.8), good)
    assert [name for name, ok in weak_base.items() if not ok][:4] == [
        "base: POPE random accuracy >= 85 %",
        "base: POPE adversarial accuracy <= 65 % with yes-ratio >= 80 %",
        "base: CHAIRs >= 10 %",
        "base: object coverage >= 90 %",
    ]


def test_ablation_checks_only_judge_the_ablations_that_ran():
    base = model()
    assert ablation_checks({"base": base, "hadpo": model()}) == {}
    checks = ablation_checks({"base": base, "no_sft": model(words=12.0), "no_qa": model(adversarial=0.55)})
    assert all(checks.values()) and len(checks) == 2
    checks = ablation_checks({"base": base, "no_sft": model(words=38.0, coverage=0.8), "no_qa": model(adversarial=0.8)})
    assert not any(checks.values())


def test_recipe_targets_read_the_recall_at_the_suites_questions_per_image():
    def with_recall(summary: dict, recall: float | None, per_image: int = 3) -> dict:
        return summary if recall is None else {**summary, f"pope_{per_image}": {"adversarial": {"recall": recall}}}

    base = with_recall(model(adversarial=0.5, random=0.9, chair=0.4, count=0.98), 0.99)
    good = with_recall(model(adversarial=0.90, random=0.89, chair=0.16, count=0.95), 0.94)
    assert all(recipe_targets(base, good).values())
    bad = with_recall(model(adversarial=0.899, random=0.889, chair=0.161, count=0.949), 0.939)
    assert not any(recipe_targets(base, bad).values())
    # Two question pairs per image: the recall is read from pope_2 and the target named for it.
    base_2, good_2 = with_recall(base, 0.99, per_image=2), with_recall(good, 0.94, per_image=2)
    targets = recipe_targets({k: v for k, v in base_2.items() if k != "pope_3"}, good_2)
    assert targets["recall (2 questions per image) within 5 points of the base"]
    # Not asked: the recall target is not met, the others are judged as before.
    unasked = recipe_targets(model(adversarial=0.5, random=0.9, chair=0.4, count=0.98), good)
    assert [name for name, met in unasked.items() if not met] == [
        "recall (3 questions per image) within 5 points of the base"
    ]
