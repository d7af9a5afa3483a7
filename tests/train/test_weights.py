"""Where a pair's weight lies: token masks (RLHF-V's diff, the judge's spans), severity, and the corrupted images of
mDPO, on hand-made inputs."""

import pytest
from PIL import Image

from hadpo.records import PreferencePair
from hadpo.text import sentence_spans
from hadpo.train.corruption import ImageCorruption, crop_box
from hadpo.train.weights import diff_token_masks, pair_severity, span_token_mask


def test_diff_marks_tokens_outside_common_runs_of_three():
    # [1 2 3] is a common run of 3 (same); [5 6] is only 2 long, so it stays inside the changed region
    chosen, rejected = diff_token_masks([1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 5, 6])
    assert chosen == [False, False, False, True, True, True]
    assert rejected == [False, False, False, True, True, True]
    # an inserted span (a hallucinated sentence the correction dropped) is marked on its side only
    chosen, rejected = diff_token_masks([1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 8, 8, 4, 5, 6, 7])
    assert chosen == [False] * 7
    assert rejected == [False, False, False, True, True, False, False, False, False]
    assert diff_token_masks([7, 8], [9]) == ([True, True], [True])  # "Yes." / "No.": everything differs


def test_span_mask_marks_tokens_overlapping_a_span():
    offsets = [(0, 5), (5, 9), (9, 12), (12, 13)]
    assert span_token_mask(offsets, [(6, 8)]) == [False, True, False, False]
    assert span_token_mask(offsets, [(4, 10), (12, 13)]) == [True, True, True, True]
    assert span_token_mask(offsets, []) == [False] * 4


def test_sentence_spans_find_the_marked_sentences_in_order():
    text = "A cat. A dog. A cat."
    assert sentence_spans(text, ["A cat.", "A dog.", "A cat."], [False, False, True]) == [(14, 20)]
    assert sentence_spans(text, ["A cat.", "A bird.", "A dog."], [True, True, True]) == [(0, 6), (7, 13)]


def _pair(**fields):
    base = dict(images=["x.png"], prompt="p", chosen="c", rejected="r", kind="desc", image_id="1", pair_id="a")
    return PreferencePair(**{**base, **fields})


def test_severity_is_the_share_of_hallucinated_sentences_or_the_pairs_own():
    assert pair_severity(_pair(labels=["correct", "hallucination", "cannot_judge", "hallucination"])) == 0.5
    assert pair_severity(_pair(labels=["correct"], severity=2.5)) == 2.5
    assert pair_severity(_pair(kind="qa")) == 1.0
    with pytest.raises(ValueError, match="pair 'a' has neither `severity` nor sentence `labels`"):
        pair_severity(_pair())


def test_corruptions_are_seeded_per_pair_and_crop_keeps_the_asked_share():
    image = Image.new("RGB", (60, 40))
    image.putdata([(x % 256, y % 256, 7) for y in range(40) for x in range(60)])
    crop = ImageCorruption("crop", (0.01, 0.2), seed=3)
    first, again, other = crop(image, "pair-1"), crop(image, "pair-1"), crop(image, "pair-2")
    assert first.size == image.size and first.tobytes() == again.tobytes() and first.tobytes() != other.tobytes()
    assert ImageCorruption("crop", (0.01, 0.2), seed=4)(image, "pair-1").tobytes() != first.tobytes()
    import random

    for seed in range(50):
        left, top, right, bottom = crop_box(60, 40, (0.01, 0.2), random.Random(seed))
        share = (right - left) * (bottom - top) / (60 * 40)
        assert 0 <= left < right <= 60 and 0 <= top < bottom <= 40 and 0.005 <= share <= 0.23
    assert set(ImageCorruption("black")(image, "a").getdata()) == {(0, 0, 0)}
    noise = ImageCorruption("noise")(image, "a")
    assert noise.size == image.size and len(set(noise.getdata())) > 1000
