"""SHR with a scripted judge: sentence counting, word ratio, repetition, failures reported, boxes normalised."""

from __future__ import annotations

import json

import pytest

from hadpo.evaluate.shr import evaluate_shr, ngram_unique_ratio, read_descriptions
from hadpo.judge.llm_answers import render_annotations
from hadpo.records import ImageRecord, Judgement, Region, read_jsonl
from hadpo.text import split_sentences


class ScriptedJudge:
    """Labels sentences from a script {description_id: labels}; "fail" fails the judgement, "raise" raises,
    "short" answers one label too few (a sentence-count mismatch)."""

    name = "scripted@v0"
    max_concurrency = 2

    def __init__(self, script):
        self.script = script

    def judge(self, image, description_id, text):
        sentences = split_sentences(text)
        labels = self.script[description_id]
        if labels == "raise":
            raise RuntimeError("endpoint down")
        failed = "unparseable answer" if labels == "fail" else None
        if labels in ("fail", "short"):
            labels = ["cannot_judge"] * (len(sentences) - (labels == "short"))
        return Judgement(
            description_id=description_id,
            image_id=image.image_id,
            judge=self.name,
            sentences=sentences,
            labels=labels,
            failed=failed,
        )


def _image(image_id):
    return ImageRecord(image_id=image_id, path=f"{image_id}.png", width=200, height=100)


def test_box_normalised_to_image_size_with_two_decimals():
    # What the judge is shown, one line per region: `[x1, y1, x2, y2] phrase`, corners as fractions of the image.
    # [x, y, w, h] = [50, 25, 100, 50] on 200 x 100 -> x1 = 0.25, y1 = 0.25, x2 = 150/200 = 0.75, y2 = 75/100.
    image = _image("1").model_copy(update={"regions": [Region(phrase="a cup", box=[50, 25, 100, 50])]})
    assert render_annotations(image) == "[0.25, 0.25, 0.75, 0.75] a cup"
    image = _image("1").model_copy(update={"regions": [Region(phrase="a red car", box=[0, 0, 67, 33])]})
    assert render_annotations(image) == "[0.00, 0.00, 0.34, 0.33] a red car"  # 67/200 = 0.335 -> 0.34


def test_ngram_unique_ratio_by_hand():
    # "a dog. a dog, a cat" -> tokens a dog a dog a cat (6): unigrams unique {a, dog, cat} = 3/6;
    # bigrams (5): a-dog, dog-a, a-dog, dog-a, a-cat -> unique 3 -> 3/5; 4-grams (3): all distinct -> 1.
    text = "a dog. a dog, a cat"
    assert ngram_unique_ratio(text, 1) == pytest.approx(0.5)
    assert ngram_unique_ratio(text, 2) == pytest.approx(0.6)
    assert ngram_unique_ratio(text, 4) == pytest.approx(1.0)
    assert ngram_unique_ratio("one two", 3) is None


def test_shr_worked_out_by_hand(caplog):
    descriptions = [
        ("d1", "1", "A red car is parked. A dog sits on it. The sky is lovely."),
        ("d2", "2", "Two cats sleep. A cat sleeps."),
        ("d3", "1", "A bus drives by. It is old."),  # judgement fails: counted, never dropped
        ("d4", "2", "A tree."),  # the judge raises: a failed judgement
        ("d5", "2", "A boat. A lake."),  # one label short: unusable
        ("d6", "9", "Unknown image."),  # skipped: no annotations
        ("d7", "1", "   "),  # skipped: empty
    ]
    script = {
        "d1": ["correct", "hallucination", "cannot_judge"],
        "d2": ["hallucination", "correct"],
        "d3": "fail",
        "d4": "raise",
        "d5": "short",
    }
    result, judgements = evaluate_shr(
        descriptions, {"1": _image("1"), "2": _image("2")}, ScriptedJudge(script), progress=False
    )
    # Usable: d1 (3 sentences, 1 hallucinated), d2 (2 sentences, 1 hallucinated) -> SHR = 2 / 5 = 0.4.
    # Words per judged sentence (split on spaces): d1 "A red car is parked" 5, "A dog sits on it" 5,
    # "The sky is lovely" 4; d2 "Two cats sleep" 3, "A cat sleeps" 3 -> hallucinated (5 + 3) / 20 = 0.4.
    assert result.shr == pytest.approx(0.4)
    assert result.hallucinated_word_ratio == pytest.approx(0.4)
    assert result.label_counts == {"hallucination": 2, "correct": 2, "cannot_judge": 1}
    assert (result.failed_judgements, sorted(result.failed_ids), result.skipped) == (3, ["d3", "d4", "d5"], 2)
    # Per image over the 5 judged descriptions: sentences 3, 2, 2, 1, 2 -> 2.0; words (split on spaces)
    # 14, 6, 7, 2, 4 -> 33 / 5 = 6.6.
    assert result.images == 5
    assert result.sentences_per_image == pytest.approx(2.0)
    assert result.words_per_image == pytest.approx(6.6)
    assert result.judge == "scripted@v0" and len(judgements) == 5
    assert "description d6: image 9 has no annotations; skipped" in caplog.text
    assert "d4 (image 2): judge raised RuntimeError: endpoint down" in caplog.text


def test_read_descriptions_from_records_and_the_release_json(tmp_path):
    lines = [
        {"description_id": "a", "image_id": "1", "prompt": "p", "text": "A dog."},
        {"question_id": "q", "image_id": "2", "prompt": "p", "text": "A cat."},
        {"image_id": "3"},
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    triples, skipped = read_descriptions(tmp_path / "d.jsonl")
    assert triples == [("a", "1", "A dog."), ("q", "2", "A cat.")] and skipped == 2
    (tmp_path / "release.json").write_text(json.dumps({"7": "A bird.", "8": None}))
    assert read_descriptions(tmp_path / "release.json") == ([("7", "7", "A bird.")], 1)


def test_offline_judge_from_the_judge_wing_runs_through_the_protocol(image_records):
    offline = pytest.importorskip("hadpo.judge.offline")
    records = read_jsonl(image_records, ImageRecord)
    judge = offline.AnnotationJudge.from_records(records)
    descriptions = [("a", "1", "There is a red dog. There is a blue cup."), ("b", "2", "There is a blue cup.")]
    result, _ = evaluate_shr(descriptions, {r.image_id: r for r in records}, judge, progress=False)
    # Image 1 holds only a red dog, image 2 a blue cup (annotations complete): one hallucinated sentence of 3.
    assert result.shr == pytest.approx(1 / 3) and result.failed_judgements == 0


def test_images_from_the_release_inputs(tmp_path):
    from hadpo.evaluate.shr import images_from_visual_genome

    (tmp_path / "image_data.json").write_text(
        json.dumps(
            [
                {"image_id": 1, "width": 800, "height": 600, "url": "https://cs.stanford.edu/VG_100K/1.jpg"},
                {"image_id": 2, "width": 640, "height": 480, "url": "https://cs.stanford.edu/VG_100K_2/2.jpg"},
            ]
        )
    )
    (tmp_path / "regions.json").write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "regions": [
                        {"image_id": 1, "phrase": "a man ", "x": 400, "y": 300, "width": 200, "height": 150},
                        {"image_id": 1, "phrase": " ", "x": 0, "y": 0, "width": 1, "height": 1},
                    ],
                },
                {"id": 2, "regions": [{"image_id": 2, "phrase": "a dog", "x": 0, "y": 0, "width": 64, "height": 48}]},
            ]
        )
    )
    (tmp_path / "factual.jsonl").write_text(json.dumps({"1": ["The man is a chef."]}) + "\n")
    (tmp_path / "val.json").write_text(json.dumps([{"image_id": 1}]))
    (record,) = images_from_visual_genome(
        tmp_path / "image_data.json", tmp_path / "regions.json", [tmp_path / "factual.jsonl"], tmp_path / "val.json"
    )
    assert (record.image_id, record.path, record.captions) == ("1", "VG_100K/1.jpg", ["The man is a chef."])
    # [400, 300, 200, 150] on 800 x 600 -> [0.50, 0.50, 0.75, 0.75]; the empty phrase is dropped.
    assert render_annotations(record).splitlines()[0] == "[0.50, 0.50, 0.75, 0.75] a man"
