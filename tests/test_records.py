import json

import pytest

from hadpo.records import ImageRecord, ObjectAnnotation, RecordError, read_jsonl, write_jsonl


def _image(image_id="1"):
    return ImageRecord(
        image_id=image_id,
        path="images/1.png",
        width=48,
        height=48,
        objects=[ObjectAnnotation(name="star", attributes=["red"], box=[0, 0, 16, 16])],
    )


def test_roundtrip(tmp_path):
    path = tmp_path / "images.jsonl"
    assert write_jsonl(path, [_image("1"), _image("2")]) == 2
    loaded = read_jsonl(path, ImageRecord)
    assert [r.image_id for r in loaded] == ["1", "2"]
    assert loaded[0].objects[0].name == "star"


def test_bad_line_names_file_line_and_field(tmp_path):
    path = tmp_path / "images.jsonl"
    good = _image().model_dump(mode="json")
    bad = dict(good, width="wide")
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordError, match=r"images.jsonl:3: field 'width'"):
        read_jsonl(path, ImageRecord)


def test_missing_field_and_unknown_key(tmp_path):
    path = tmp_path / "x.jsonl"
    data = _image().model_dump(mode="json")
    del data["path"]
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(RecordError, match=r"x.jsonl:1: field 'path'"):
        read_jsonl(path, ImageRecord)
    data = dict(_image().model_dump(mode="json"), colour="red")
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(RecordError, match=r"x.jsonl:1: field 'colour'"):
        read_jsonl(path, ImageRecord)


def test_not_json(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(RecordError, match=r"x.jsonl:1: not valid JSON"):
        read_jsonl(path, ImageRecord)
