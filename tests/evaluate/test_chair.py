"""CHAIR: hadpo's synonym table and special rules, and CHAIRs / CHAIRi / recall worked out by hand (the reference
protocol against the reference code's own outputs: test_chair_reference.py)."""

from __future__ import annotations

import json

import pytest

from hadpo.evaluate.chair import evaluate_chair, load_ground_truth, score_captions, write_details
from hadpo.evaluate.chair_words import HADPO_SYNONYM_FILE, object_words, read_synonym_lines


@pytest.fixture(scope="module")
def vocabulary():
    return object_words("hadpo")


def test_table_has_the_80_coco_classes_with_two_word_objects():
    table = {name: synonyms for name, *synonyms in read_synonym_lines(HADPO_SYNONYM_FILE)}
    assert len(table) == 80
    assert {"hot dog", "traffic light", "teddy bear", "cell phone", "wine glass", "dining table"} <= set(table)
    assert "puppy" in table["dog"] and "sofa" in table["couch"]


def test_two_word_objects_and_special_rules(vocabulary):
    def objects(text):
        return [name for _, name in vocabulary.find(text)]

    assert objects("A man eats a hot dog next to two dogs.") == ["person", "hot dog", "dog"]
    assert objects("A baby elephant and an adult giraffe.") == ["elephant", "giraffe"]
    assert objects("A baby in a crib.") == ["person"]
    assert objects("A passenger jet over a passenger train on the train tracks.") == ["airplane", "train"]
    assert objects("A boy wears a bow tie.") == ["person", "tie"]
    # "toilet seat" is one toilet mention, and a lone "seat" is ignored once a toilet is mentioned.
    assert objects("A toilet seat is up.") == ["toilet"]
    assert objects("A toilet and a seat.") == ["toilet"]
    assert objects("A seat by the window.") == ["chair"]
    # Singularised before matching: knives -> knife, people -> person, teddy bears -> teddy bear.
    assert objects("Knives, people and teddy bears at the home plate.") == ["knife", "person", "teddy bear"]
    # No phrase spans a sentence end; possessives and "a/b" are words of their own; buses and ties count.
    assert objects("The street is hot. Dogs sleep.") == ["dog"]
    assert objects("The dog's bowl and a dog/cat toy.") == ["dog", "bowl", "dog", "cat"]
    assert objects("Two buses and two ties.") == ["bus", "tie"]


def test_scores_worked_out_by_hand(vocabulary):
    truth = {"1": {"dog", "person", "frisbee"}, "2": {"cat", "couch"}}
    captions = [
        ("1", "A man throws a frisbee to a dog."),  # person, frisbee, dog: all right
        ("1", "A man and a cat with a dog and a cat."),  # person, cat (H), dog, cat (H)
        ("2", "A cat sleeps on a sofa near a dining table."),  # cat, couch, dining table (H)
        ("2", "It is sunny."),  # no object mention
        ("3", "A dog."),  # unknown image: skipped
        ("2", "  "),  # empty: skipped
    ]
    result = score_captions(captions, truth, vocabulary)
    # The hadpo protocol skips the empty caption; the reference protocol scores it as a caption without objects.
    reference = score_captions(captions, truth, object_words("reference"))
    assert (reference.captions, reference.empty_captions, reference.skipped, reference.chair_s) == (5, 1, 1, 0.4)
    # Scored captions: 4. With >= 1 hallucination: captions 2 and 3 -> CHAIRs = 2/4 = 0.5.
    # Mentions: 3 + 4 + 3 + 0 = 10; hallucinated: 2 + 1 = 3 -> CHAIRi = 3/10 (mentions, not unique objects).
    # Recall: covered per caption 3/3, 2/3 (person, dog), 2/2 (cat, couch), 0/2 -> (3 + 2 + 2 + 0)/(3+3+2+2) = 0.7.
    # Lengths (split on spaces): 8, 11, 10, 3 -> 32/4 = 8.
    assert result.chair_s == pytest.approx(0.5)
    assert result.chair_i == pytest.approx(0.3)
    assert result.recall == pytest.approx(0.7)
    assert result.avg_length == pytest.approx(8.0)
    assert (result.captions, result.mentions, result.hallucinated_mentions) == (4, 10, 3)
    assert (result.captions_without_objects, result.skipped) == (1, 2)
    assert result.details[1].hallucinated == ["cat", "cat"]
    assert [m.words for m in result.details[2].mentions] == ["cat", "sofa", "dining table"]


def test_files_coco_instances_plus_reference_captions_and_world_records(image_records, tmp_path):
    coco = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "dog"}, {"id": 64, "name": "potted plant"}],
        "annotations": [{"image_id": 1, "category_id": 1}, {"image_id": 2, "category_id": 64}],
    }
    references = {"annotations": [{"image_id": 1, "caption": "A puppy on a bench."}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    (tmp_path / "captions.json").write_text(json.dumps(references))
    truth, _ = load_ground_truth(tmp_path / "instances.json", tmp_path / "captions.json")
    assert truth == {"1": {"dog", "bench"}, "2": {"potted plant"}}

    # A custom dataset in COCO format: its categories join the vocabulary, its attributes leave it, and an
    # image can be named by file name, stem or hadpo id.
    custom = {
        "images": [{"id": 1, "file_name": "images/w-1.png", "hadpo_image_id": "w-1"}],
        "categories": [{"id": 1, "name": "moon"}],
        "annotations": [{"image_id": 1, "category_id": 1, "attributes": ["orange"]}],
    }
    (tmp_path / "custom.json").write_text(json.dumps(custom))
    for protocol in ("reference", "hadpo"):
        truth, vocabulary = load_ground_truth(tmp_path / "custom.json", protocol=protocol)
        assert truth["1"] == truth["w-1"] == truth["images/w-1.png"] == {"moon"}
        assert vocabulary.find("An orange moon.") == [("moon", "moon")]

    results = [
        {"image_id": 1, "caption": "A dog on a bench with a cat."},
        {"image_id": 2, "caption": "A houseplant."},
        {"caption": "no image id"},
    ]
    (tmp_path / "results.json").write_text(json.dumps(results))
    result = evaluate_chair(tmp_path / "results.json", tmp_path / "instances.json", tmp_path / "captions.json")
    # Mentions dog, bench, cat (H), potted plant: CHAIRi 1/4, CHAIRs 1/2; the entry without image_id is skipped.
    assert (result.chair_i, result.chair_s, result.skipped) == (0.25, 0.5, 1)

    # Annotated attribute words are no objects there: the colour "orange" is not the fruit.
    assert object_words("hadpo", None, ["moon"], ["orange"]).find("An orange moon.") == [("moon", "moon")]
    assert object_words("hadpo").find("An orange moon.") == [("orange", "orange")]
    # Another vocabulary in place of the COCO table, e.g. a dataset's own category names with their synonyms.
    shapes = object_words("reference", {"star": ["starlet"], "moon": []})
    assert shapes.find("Two stars, a starlet and a moon. A dog.") == [
        ("star", "star"),
        ("starlet", "star"),
        ("moon", "moon"),
    ]

    # World-style records: the annotation names ("square", "circle") join the vocabulary.
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        json.dumps(
            {"question_id": "a", "image_id": "0", "prompt": "p", "text": "A red square, a blue circle and a triangle."}
        )
        + "\n"
    )
    world = evaluate_chair(answers, image_records, protocol="hadpo")
    # Image 0 has square, circle, knife: the triangle is not a known object word, so 2 mentions, 0 hallucinated,
    # recall 2/3.
    assert (world.mentions, world.hallucinated_mentions, world.recall) == (2, 0, pytest.approx(2 / 3))
    write_details(tmp_path / "detail.jsonl", world)
    row = json.loads((tmp_path / "detail.jsonl").read_text())
    assert row["covered"] == ["circle", "square"] and row["mentions"][0] == {
        "words": "square",
        "object": "square",
        "hallucinated": False,
    }


def test_one_caption_per_image_unless_several_are_asked_for(image_records, tmp_path):
    captions = tmp_path / "captions.jsonl"
    rows = [{"image_id": "0", "caption": "A red square."}, {"image_id": "0", "caption": "A dog and a square."}]
    captions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match=r"captions.jsonl:2: a second caption of image 0 \(the first: .*:1\)"):
        evaluate_chair(captions, image_records, protocol="hadpo")
    both = evaluate_chair(captions, image_records, protocol="hadpo", several_per_image=True)
    # The reference code's way: each caption scored, the dog hallucinated in the second only.
    assert (both.captions, both.chair_s, both.hallucinated_mentions) == (2, 0.5, 1)
