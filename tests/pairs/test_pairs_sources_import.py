"""Sources (Visual Genome, COCO, folder) become ImageRecords; the HA-DPO release's files import as pairs."""

from __future__ import annotations

import json

import datasets
import pytest
from PIL import Image

from hadpo.pairs.importer import import_release
from hadpo.pairs.sources import load_coco, load_folder, load_visual_genome, validate_images
from hadpo.pairs.store import Ledger
from hadpo.records import PreferencePair, RecordError, read_jsonl


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def vg_folder(tmp_path):
    images = tmp_path / "VG_100K"
    images.mkdir()
    for image_id in (1, 2):
        Image.new("RGB", (100, 80)).save(images / f"{image_id}.jpg")
    return images


def test_visual_genome_files_become_records(vg_folder, tmp_path):
    attributes = write_json(
        tmp_path / "attributes.json",
        [
            {
                "image_id": 1,
                "attributes": [
                    {"object_id": 10, "x": 0, "y": 0, "w": 10, "h": 10, "names": ["Man"], "attributes": ["tall "]},
                    {"object_id": 11, "x": 5, "y": 5, "w": 5, "h": 5, "names": ["shirt"]},
                ],
            },
            {"image_id": 2, "attributes": [{"object_id": 12, "x": 1, "y": 1, "w": 2, "h": 2, "names": ["dog"]}]},
        ],
    )
    regions = write_json(
        tmp_path / "region_descriptions.json",
        [
            {
                "id": 1,
                "regions": [
                    {
                        "region_id": 5,
                        "image_id": 1,
                        "phrase": "a man in a shirt",
                        "x": 0,
                        "y": 0,
                        "width": 20,
                        "height": 20,
                    }
                ],
            },
        ],
    )
    relationships = write_json(
        tmp_path / "relationships.json",
        [
            {
                "image_id": 1,
                "relationships": [
                    {
                        "predicate": "WEARS",
                        "subject": {"name": "man", "x": 0, "y": 0, "w": 10, "h": 10},
                        "object": {"names": ["shirt"], "x": 5, "y": 5, "w": 5, "h": 5},
                    }
                ],
            },
        ],
    )
    image_data = write_json(tmp_path / "image_data.json", [{"image_id": 1, "width": 100, "height": 80}])
    ledger = Ledger(tmp_path / "events.jsonl")
    records = load_visual_genome(
        vg_folder,
        attributes=attributes,
        region_descriptions=regions,
        relationships=relationships,
        image_data=image_data,
        ledger=ledger,
    )
    assert [r.image_id for r in records] == ["1"]  # image 2 is not in image_data.json
    assert ledger.counts("skipped") == {"unknown_image": 1}
    assert load_visual_genome(vg_folder, attributes=attributes, min_objects=2)[0].image_id == "1"  # 2: too few
    man = records[0].objects[0]
    assert (man.name, man.attributes, man.box) == ("man", ["tall"], [0, 0, 10, 10])
    assert [r.phrase for r in records[0].regions] == ["a man in a shirt", "man wears shirt"]
    assert records[0].source == "visual_genome" and not records[0].complete
    assert (records[0].width, records[0].height) == (100, 80)


def test_coco_instances_and_unknown_image(tmp_path, vg_folder):
    data = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 80}],
        "categories": [{"id": 3, "name": "car"}, {"id": 4, "name": "dog"}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4]}],
    }
    records, names = load_coco(write_json(tmp_path / "instances.json", data), vg_folder)
    assert names == ["car", "dog"] and records[0].objects[0].name == "car" and records[0].source == "coco"
    data["annotations"].append({"id": 8, "image_id": 99, "category_id": 4, "bbox": [0, 0, 1, 1]})
    ledger = Ledger(tmp_path / "events.jsonl")
    records, _ = load_coco(write_json(tmp_path / "instances.json", data), vg_folder, ledger=ledger)
    assert [r.image_id for r in records] == ["1"] and ledger.counts("skipped") == {"unknown_image": 1}
    with pytest.raises(ValueError, match="image 99: .*instances.json: 1 annotations refer to an image not in the file"):
        load_coco(tmp_path / "instances.json", vg_folder)


def test_folder_source_and_validation(image_records, tmp_path):
    records = load_folder(image_records)
    broken = tmp_path / "broken.jsonl"
    lines = image_records.read_text().splitlines()
    broken.write_text("\n".join([lines[0], "{not json", lines[1].replace('"width": 48', '"width": -1')]) + "\n")
    ledger = Ledger(tmp_path / "broken_events.jsonl")
    assert [r.image_id for r in load_folder(broken, ledger)] == ["0"]
    assert ledger.counts("skipped") == {"bad_record": 2}
    with pytest.raises(RecordError, match="broken.jsonl:2"):
        load_folder(broken)
    assert all(r.path.startswith(str(tmp_path)) for r in records)
    (tmp_path / "images" / "0.png").write_bytes(b"garbage")
    ledger = Ledger(tmp_path / "events.jsonl")
    kept = validate_images(records + records[1:2], ledger)
    assert [r.image_id for r in kept] == ["1", "2", "3"]
    assert ledger.counts("skipped") == {"corrupt_image": 1, "duplicate_image_id": 1}


def test_import_release_both_layouts(vg_folder, tmp_path):
    desc_list = write_json(
        tmp_path / "desc_list.json",
        [
            {"image_id": 1, "chosen": ["c1", "c2", "c3"], "rejected": ["r1", "r2", "r3"]},
            {"image_id": 404, "chosen": ["c"], "rejected": ["r"]},  # no image
            {"image_id": 2, "chosen": [], "rejected": ["r"]},  # nothing chosen
        ],
    )
    pope = write_json(
        tmp_path / "pope_data.json",
        [
            {"image_id": 1, "question": "Is there a dog?", "answer": "no", "chosen": "No.", "reject": "Yes."},
            {"image_id": 2, "question": "Is there a cat?", "answer": "yes", "chosen": "Yes.", "rejected": "No."},
            {
                "image_id": 2,
                "question": "Is there a car?",
                "answer": "no",
                "chosen": "No.",
                "reject": "No.",
                "correct": True,
            },
        ],
    )
    output = tmp_path / "imported" / "pairs.jsonl"
    stats = import_release(output, vg_folder, desc_list, pope)
    assert stats["pairs"] == {"desc": 3, "qa": 2, "total": 5} and stats["qa_skipped_correct"] == 1
    assert stats["skipped"] == {"missing_field": 1, "missing_image": 1}
    pairs = read_jsonl(output, PreferencePair)
    assert [(p.chosen, p.rejected, p.rewrite_index) for p in pairs[:3]] == [
        ("c1", "r1", 1),
        ("c2", "r2", 2),
        ("c3", "r3", 3),
    ]
    assert pairs[3].prompt == "Is there a dog?" and pairs[4].rejected == "No."
    dataset = datasets.load_dataset("json", data_files=str(output), split="train")
    assert {"images", "prompt", "chosen", "rejected"} <= set(dataset.column_names)

    llava = write_json(tmp_path / "desc_llava.json", {"2": {"chosen": ["a", "b"], "rejected": ["x", "y"]}})
    stats = import_release(tmp_path / "llava" / "pairs.jsonl", vg_folder, desc_data=llava)
    assert stats["pairs"]["desc"] == 2
