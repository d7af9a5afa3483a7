"""A pair build on the shared fixtures: hand-written descriptions (known hallucinations) through judge, rewrite
and qa with the offline judge; the output loads as TRL's DPO columns; reruns and bad input."""

from __future__ import annotations

import json

import datasets
import pytest
from PIL import Image

from hadpo.pairs.build import run_build
from hadpo.pairs.config import PairsConfig, ShortAnswers, SourceConfig
from hadpo.pairs.store import BuildFiles
from hadpo.records import Description, ImageRecord, Judgement, PreferencePair, read_jsonl, write_jsonl

# Fixture images: 0 = red square, blue circle, green knife; 1 = red dog; 2 = blue cup, red fork, red knife; 3 = empty
DESCRIPTIONS = [
    ("0#d0", "0", "There is a red square. A blue circle is in the image. There is also a cup."),  # cup absent
    ("0#d1", "0", "There is a green knife and a red square."),  # no hallucination: no pair
    ("1#d0", "1", "There is a blue dog. A fork lies next to it."),  # colour + absent fork
    ("2#d0", "2", "There are two knives. There is a blue cup."),  # count: one knife
    ("2#d1", "9", "There is a cat."),  # unknown image
    ("3#d0", "3", "  "),  # empty
]


def write_descriptions(files: BuildFiles) -> None:
    write_jsonl(
        files.descriptions,
        [
            Description(description_id=d, image_id=i, prompt="Describe this image in detail.", text=t)
            for d, i, t in DESCRIPTIONS
        ],
    )


def config_for(image_records, tmp_path, **judge) -> PairsConfig:
    config = PairsConfig(out_dir=str(tmp_path / "build"), source=SourceConfig(kind="folder", images=str(image_records)))
    config.judge.extra_names = ["cat", "cup"]  # object words to detect even when no kept image has them
    return config


def test_offline_build_makes_both_kinds_and_loads_as_dpo_columns(image_records, tmp_path):
    config = config_for(image_records, tmp_path)
    files = BuildFiles(tmp_path / "build")
    files.root.mkdir()
    write_descriptions(files)
    stats = run_build(config, ("judge", "rewrite", "qa"))

    judgements = {j.description_id: j for j in read_jsonl(files.judgements, Judgement)}
    assert judgements["0#d0"].hallucinated_objects == ["cup"]
    # the absent cup becomes the annotated object the text never mentions (fill_absent)
    assert (
        judgements["0#d0"].corrected == "There is a red square. A blue circle is in the image. There is also a knife."
    )
    assert not judgements["0#d1"].has_hallucination
    assert judgements["1#d0"].corrected == "There is a red dog."
    assert judgements["2#d0"].corrected == "There is one knife. There is a blue cup."

    pairs = read_jsonl(files.pairs, PreferencePair)
    desc = [p for p in pairs if p.kind == "desc"]
    qa = [p for p in pairs if p.kind == "qa"]
    assert {p.source_description_id for p in desc} == {"0#d0", "1#d0", "2#d0"}
    # Every dropped rewrite is counted once (a repeat of an earlier style of the offline paraphraser included).
    assert len(desc) == 3 * (1 + 3) - sum(stats["dropped"].values())
    assert stats["dropped"].get("duplicate_rewrite") == 2
    assert len({(p.chosen, p.rejected) for p in desc}) == len(desc)
    assert {p.rewrite_index for p in desc} == {0, 1, 2, 3}
    questions = {(p.image_id, p.prompt): (p.chosen, p.rejected) for p in qa}
    assert questions[("0", "Is there a cup in the image?")] == (
        "No, there is no cup in the image.",
        "Yes, there is a cup in the image.",
    )
    assert questions[("1", "Is the dog blue?")] == ("No, the dog is red.", "Yes, the dog is blue.")
    assert questions[("2", "How many knives are there in the image?")][0] == "There is one knife."
    assert any(chosen.startswith("Yes") for chosen, _ in questions.values())  # balanced with present objects

    assert stats["descriptions_judged"] == 4 and stats["descriptions_with_hallucination"] == 3
    assert stats["descriptions_without_hallucination"] == 1
    assert stats["skipped"] == {"empty_description": 1, "unknown_image": 1}
    assert stats["pairs"]["desc"] == len(desc) and stats["pairs"]["qa"] == len(qa)
    assert json.loads(files.stats.read_text())["pairs"] == stats["pairs"]

    dataset = datasets.load_dataset("json", data_files=str(files.pairs), split="train")
    assert {"images", "prompt", "chosen", "rejected"} <= set(dataset.column_names)
    assert dataset[0]["images"] == [str(tmp_path / "images" / "0.png")]
    assert Image.open(dataset[0]["images"][0]).size == (48, 48)

    # Rerun: nothing new is judged or rewritten, the same pairs come out, counts do not double.
    lines = {path: path.read_text().count("\n") for path in (files.judgements, files.rewrites)}
    again = run_build(config, ("judge", "rewrite", "qa"))
    assert {path: path.read_text().count("\n") for path in lines} == lines
    assert read_jsonl(files.pairs, PreferencePair) == pairs
    assert again["skipped"] == stats["skipped"] and again["pairs"] == stats["pairs"]


def test_bad_images_are_skipped_counted_and_named(image_records, tmp_path, caplog):
    records = read_jsonl(image_records, ImageRecord)
    (tmp_path / "images" / "1.png").unlink()  # missing
    (tmp_path / "images" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")  # corrupt
    write_jsonl(image_records, records)
    config = config_for(image_records, tmp_path)
    files = BuildFiles(tmp_path / "build")
    files.root.mkdir()
    write_descriptions(files)
    stats = run_build(config, ("judge", "rewrite", "qa"))
    assert stats["images"] == 2
    assert stats["skipped"]["missing_image"] == 1 and stats["skipped"]["corrupt_image"] == 1
    assert stats["skipped"]["unknown_image"] == 3  # descriptions of the two dropped images and of image 9
    assert "skipped 1 (missing_image)" in caplog.text and "skipped 2 (corrupt_image)" in caplog.text
    assert {p.image_id for p in read_jsonl(files.pairs, PreferencePair)} == {"0"}


def test_qa_uses_the_models_own_answers_when_sampled(image_records, tiny_model_dir, tmp_path):
    config = config_for(image_records, tmp_path)
    config.describe.model = str(tiny_model_dir)
    config.qa.sample_answers = True
    config.qa.sampling.max_new_tokens = 4
    files = BuildFiles(tmp_path / "build")
    files.root.mkdir()
    write_descriptions(files)
    stats = run_build(config, ("judge", "qa"))
    qa = [p for p in read_jsonl(files.pairs, PreferencePair) if p.kind == "qa"]
    answers = {a["question_id"]: a["text"] for a in map(json.loads, files.qa_answers.read_text().splitlines())}
    yes_no = [p for p in qa if p.prompt.startswith("Is ")]
    assert stats["pairs"]["qa_with_model_answer"] == len(yes_no) == len(answers) > 0
    for pair in yes_no:  # the model's words took one side, the template kept the other
        assert answers[pair.pair_id].strip() in (pair.chosen, pair.rejected)


def test_an_interrupted_judge_stage_resumes_without_losing_work(image_records, tmp_path, monkeypatch):
    from hadpo.judge.offline import AnnotationJudge
    from hadpo.pairs import judging
    from hadpo.pairs.store import Ledger

    monkeypatch.setattr(judging, "CHUNK", 1)  # append after every judgement
    images = {r.image_id: r for r in read_jsonl(image_records, ImageRecord)}
    files = BuildFiles(tmp_path / "build")
    files.root.mkdir()
    write_descriptions(files)
    offline = AnnotationJudge.from_records(images.values())

    class Crashing:
        name, max_concurrency = offline.name, 1

        def judge(self, image, description_id, text):
            if description_id == "2#d0":
                raise KeyboardInterrupt  # the user stops the build here
            return offline.judge(image, description_id, text)

    ledger = Ledger(files.events)
    with pytest.raises(KeyboardInterrupt):
        judging.judge_descriptions(images, files, Crashing(), ledger)
    assert [j.description_id for j in read_jsonl(files.judgements, Judgement)] == ["0#d0", "0#d1", "1#d0"]
    judging.judge_descriptions(images, files, offline, ledger)
    assert [j.description_id for j in read_jsonl(files.judgements, Judgement)] == [
        "0#d0",
        "0#d1",
        "1#d0",
        "2#d0",
    ]
    assert ledger.counts("skipped") == {
        "empty_description": 1,
        "unknown_image": 1,
    }  # counted once over both runs


def test_qa_kinds_keep_question_types_out_of_the_pairs(image_records, tmp_path):
    config = config_for(image_records, tmp_path)
    config.qa.kinds = ["existence"]
    files = BuildFiles(tmp_path / "build")
    files.root.mkdir()
    write_descriptions(files)
    run_build(config, ("judge", "rewrite", "qa"))
    prompts = {p.prompt for p in read_jsonl(files.pairs, PreferencePair) if p.kind == "qa"}
    assert "Is there a cup in the image?" in prompts
    assert "Is the dog blue?" not in prompts  # the attribute fact of the full build above
    assert all(prompt.startswith("Is there") for prompt in prompts)


def test_short_answers_replace_the_sentences_and_yes_facts_balance_no_facts(image_records, tmp_path):
    config = config_for(image_records, tmp_path)
    config.qa.kinds = ["existence"]
    config.qa.short_answers = ShortAnswers()
    files = BuildFiles(tmp_path / "build")
    files.root.mkdir()
    write_descriptions(files)
    run_build(config, ("judge", "qa"))
    qa = [p for p in read_jsonl(files.pairs, PreferencePair) if p.kind == "qa"]
    assert {(p.chosen, p.rejected) for p in qa} == {("Yes.", "No."), ("No.", "Yes.")}
    by_image: dict[str, list[str]] = {}
    for pair in qa:
        by_image.setdefault(pair.image_id, []).append(pair.chosen)
    # image 0: absent cup (no) -> one present object (yes); image 1: absent fork (no) -> the dog (yes);
    # image 2 has no existence error, so one present object keeps the image's pairs from being all "no".
    assert {image: sorted(chosen) for image, chosen in by_image.items()} == {
        "0": ["No.", "Yes."],
        "1": ["No.", "Yes."],
        "2": ["Yes."],
    }


def test_an_unknown_qa_kind_is_refused():
    from hadpo.config import validate_config

    with pytest.raises(ValueError, match="qa.kinds: unknown kind 'colour'"):
        validate_config(PairsConfig, {"qa": {"kinds": ["existence", "colour"]}}, "build.yaml")


def test_co_occurrence_questions_ask_about_the_absent_objects_that_usually_come_along():
    from hadpo.pairs.qa import co_occurrence_facts
    from hadpo.records import ObjectAnnotation

    def record(image_id, names, complete=True):
        objects = [ObjectAnnotation(name=n, box=[0, 0, 4, 4]) for n in names]
        return ImageRecord(
            image_id=image_id, path=f"{image_id}.png", width=8, height=8, objects=objects, complete=complete
        )

    images = {
        r.image_id: r
        for r in [
            record("a", ["fork", "knife"]),
            record("b", ["fork", "knife", "cup"]),
            record("c", ["fork", "plate"]),
            record("d", ["fork"]),
            record("e", ["dog"], complete=False),
        ]
    }
    facts = co_occurrence_facts(images, per_image=1)
    by_image = {}
    for fact in facts:
        by_image.setdefault(fact.image_id, []).append((fact.question, fact.right_polarity))
    # "d" holds only a fork: the knife comes along most often, so the "no" question is about the knife.
    assert by_image["d"] == [("Is there a knife in the image?", "no"), ("Is there a fork in the image?", "yes")]
    assert "e" not in by_image  # incomplete annotations cannot prove absence
    assert all(f.right.startswith("No") == (f.right_polarity == "no") for f in facts)
    # The "yes" questions that balance them spread over the present objects: none is asked only "no".
    images = {
        str(i): record(
            str(i), ["cloud", "moon", "star", "sun"][: i % 4] + ["cloud", "moon", "star", "sun"][i % 4 + 1 :]
        )
        for i in range(40)
    }
    asked_yes = {f.question for f in co_occurrence_facts(images, per_image=1) if f.right_polarity == "yes"}
    assert asked_yes == {f"Is there a {name} in the image?" for name in ("cloud", "moon", "star", "sun")}
