"""The offline rewriter (hadpo.judge.paraphrase): one style per rewrite index for both texts, meaning kept."""

from __future__ import annotations

from collections import Counter

from hadpo.judge.offline import AnnotationJudge
from hadpo.judge.paraphrase import ParaphraseRewriter, rephrase
from hadpo.records import ImageRecord, ObjectAnnotation

SCENE = ImageRecord(
    image_id="s",
    path="s.png",
    width=48,
    height=48,
    complete=True,
    objects=[
        ObjectAnnotation(name="star", attributes=["red", "small"], box=[0, 0, 16, 16], position="top left"),
        ObjectAnnotation(name="moon", attributes=["blue", "large"], box=[16, 16, 16, 16], position="center"),
    ],
)
POSITIVE = "There is a small red star in the top left. A large blue moon sits at the center."
NEGATIVE = "There is a small red star in the top left. A large blue moon sits at the center. There is a green heart."


def test_rephrase_uses_one_member_per_class():
    assert rephrase("There is a star. There are two moons.", [1, 2, 0, 0, 0, 0]) == (
        "we can see a star. one can see two moons."
    )
    assert rephrase("There is no star", [1, 0, 0, 0, 0, 0]) == "There is no star"  # guard: only before a/an/one


def test_rewrites_share_a_style_and_keep_every_label():
    judge = AnnotationJudge.from_records([SCENE], extra_names=["heart"])
    rewrites = ParaphraseRewriter().rewrite_pair(POSITIVE, NEGATIVE, 3, key="d1")
    assert len(rewrites) == 3 and len({r for r in rewrites}) == 3
    assert rewrites == ParaphraseRewriter().rewrite_pair(POSITIVE, NEGATIVE, 3, key="d1")  # seeded
    for chosen, rejected in rewrites:
        # the shared sentences are phrased the same way in both texts of one rewrite
        assert set(chosen.rstrip(".").split(". ")) <= set(rejected.rstrip(".").split(". "))
        assert Counter(judge.judge(SCENE, "c", chosen).labels) == Counter(judge.judge(SCENE, "c", POSITIVE).labels)
        assert Counter(judge.judge(SCENE, "r", rejected).labels) == Counter(judge.judge(SCENE, "r", NEGATIVE).labels)
