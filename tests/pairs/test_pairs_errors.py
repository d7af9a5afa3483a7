"""Catalogue, `hadpo pairs`: bad sources, bad stage files, bad release files and a refusing judge endpoint, each
one line and an exit code (docs/errors.md, "hadpo pairs"); the judge client's malformed answers; secrets; a torn
last line in every append file, dropped and redone on resume."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from catalogue import Case, Context, check_documented, image, run_case, truncated_png

sys.path.insert(0, str(Path(__file__).parents[1] / "judge"))
from fake_llm import FakeChatServer, valid_judge_answer  # noqa: E402

from hadpo.cli import main  # noqa: E402
from hadpo.judge import llm_client  # noqa: E402
from hadpo.judge.llm_client import LLMClient, LLMConfig, LLMError  # noqa: E402
from hadpo.records import Description, write_jsonl  # noqa: E402

KEY = "sk-hadpo-test-5f3a9c1e7b2d4086"


def _record(image_id: str, path: str, objects, width: int = 48, height: int = 48) -> dict:
    return {
        "image_id": image_id,
        "path": path,
        "width": width,
        "height": height,
        "complete": True,
        "objects": [{"name": name, "attributes": [colour], "box": box} for name, colour, box in objects],
    }


SQUARE = ("square", "red", [2, 2, 20, 20])
CUP = ("cup", "blue", [26, 26, 18, 18])


def _images(ctx: Context, records: list[dict] | None = None, files: dict | None = None) -> Path:
    """images.jsonl (placeholder {images}) of `records`, by default two drawn images; `files` maps a record's
    path to a writer (default: a 48x48 PNG)."""
    if records is None:
        records = [_record("0", "img/0.png", [SQUARE]), _record("1", "img/1.png", [SQUARE, CUP])]
    for record in records:
        (files or {}).get(record["path"], image)(ctx.tmp / record["path"])
    return ctx.write("images", "images.jsonl", "".join(json.dumps(r) + "\n" for r in records))


def _config(ctx: Context, **sections) -> Path:
    data = {
        "out_dir": str(ctx.path("out", "out")),
        "source": {"kind": "folder", "images": ctx.names.get("images")},
        "describe": {"per_image": 1},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return ctx.write("config", "build.yaml", yaml.safe_dump(data))


def _descriptions(ctx: Context, rows: list[tuple[str, str, str]]) -> Path:
    path = ctx.path("descriptions", "out/descriptions.jsonl")
    write_jsonl(
        path,
        [
            Description(description_id=d, image_id=i, prompt="Describe this image in detail.", text=t)
            for d, i, t in rows
        ],
    )
    return path


def _build(ctx: Context, *overrides: str, verb: str = "build", **sections) -> list[str]:
    return ["pairs", verb, str(_config(ctx, **sections)), *overrides]


CORRECT = (("0#d0", "0", "There is a red square."), ("1#d0", "1", "There is a red square and a blue cup."))


def _with_images(records=None, files=None, descriptions=CORRECT, **sections):
    def setup(ctx: Context) -> list[str]:
        _images(ctx, records, files)
        if descriptions:
            _descriptions(ctx, list(descriptions))
        return _build(ctx, **sections)

    return setup


def _coco(ctx: Context, data: dict) -> list[str]:
    image(ctx.tmp / "coco" / "a.jpg")
    instances = ctx.write("instances", "instances.json", json.dumps(data))
    return _build(ctx, source={"kind": "coco", "images": str(ctx.tmp / "coco"), "instances": str(instances)})


COCO_IMAGES = [{"id": 1, "file_name": "a.jpg", "width": 48, "height": 48}]


def _vg_not_json(ctx: Context) -> list[str]:
    objects = ctx.write("objects", "objects.json", '[{"image_id": 1, "objects": [\n')
    return _build(ctx, source={"kind": "visual_genome", "images": str(ctx.tmp), "objects": str(objects)})


def _import(
    ctx: Context, desc=None, pope=None, image_dir: str = "vg", output: str = "imported/pairs.jsonl"
) -> list[str]:
    image(ctx.tmp / "vg" / "7.jpg")
    argv = [
        "pairs",
        "import",
        "--image-dir",
        str(ctx.path("image_dir", image_dir)),
        "--output",
        str(ctx.path("output", output)),
    ]
    if desc is not None:
        argv += ["--desc-data", str(ctx.write("desc", "desc_data.json", desc))]
    if pope is not None:
        argv += ["--pope-data", str(ctx.write("pope", "pope_data.json", pope))]
    return argv


def _import_output_is_a_folder(ctx: Context) -> list[str]:
    argv = _import(ctx, desc=json.dumps([{"image_id": 7, "chosen": ["a"], "rejected": ["b"]}]), output="taken")
    Path(ctx.names["output"]).mkdir()
    return argv


def _pairs_exist_already(ctx: Context) -> list[str]:
    argv = _with_images()(ctx)  # "There is a red square.": correct, so no pair
    ctx.write("pairs", "out/pairs.jsonl", '{"an earlier run": "its pairs"}\n')  # must survive the failed run
    return argv


def _llm(ctx: Context, step) -> list[str]:
    """A build judged by the scripted endpoint, which answers every request with `step`."""
    ctx.monkeypatch.setenv("HADPO_TEST_KEY", KEY)
    ctx.server.script.clear()
    ctx.server.responder = lambda body: step
    ctx.names["url"] = ctx.server.base_url
    _images(ctx)
    _descriptions(ctx, [("0#d0", "0", "There is a red square."), ("1#d0", "1", "There is a dog.")])
    llm = {
        "base_url": ctx.server.base_url,
        "model": "fake",
        "api_key_env": "HADPO_TEST_KEY",
        "max_retries": 0,
        "max_concurrency": 1,
    }
    return _build(ctx, judge={"kind": "llm", "llm": llm})


NO_PAIRS = (
    "no pairs: 2 descriptions judged usable (0 judgements failed), 0 with a hallucination, 0 rewrite pairs "
    "kept; skipped: none counted; dropped: none counted (see {out}/stats.json)"
)
SKIPPED_ALL = (
    "source.images: no usable image in {images}: every one was skipped ({why} 1; reasons in {out}/events.jsonl)"
)

CASES = [
    Case(
        "pairs-images-empty",
        "an empty images.jsonl",
        lambda ctx: (ctx.write("images", "images.jsonl", ""), _build(ctx))[1],
        "source: {images} holds no image records",
        absent=("out/images.jsonl",),
    ),
    Case(
        "pairs-images-bad-line",
        "an images.jsonl whose only line is not a record",
        lambda ctx: (ctx.write("images", "images.jsonl", '{"image_id": "0"}\n'), _build(ctx))[1],
        "source: {images} holds no image records that can be read (bad_record 1; reasons in {out}/events.jsonl)",
    ),
    Case(
        "pairs-images-missing",
        "every image file of the source missing",
        _with_images(files={"img/0.png": lambda path: None, "img/1.png": lambda path: None}),
        SKIPPED_ALL.replace("{why} 1", "missing_image 2"),
        absent=("out/images.jsonl",),
    ),
    Case(
        "pairs-image-truncated",
        "the source's only image is a truncated PNG",
        _with_images([_record("0", "img/0.png", [SQUARE], 64, 64)], files={"img/0.png": truncated_png}),
        SKIPPED_ALL.replace("{why}", "corrupt_image"),
    ),
    Case(
        "pairs-box-outside-image",
        "an annotation box 100x larger than its image",
        _with_images([_record("0", "img/0.png", [("square", "red", [0, 0, 4800, 4800])])]),
        SKIPPED_ALL.replace("{why}", "box_outside_image"),
    ),
    Case(
        "pairs-image-size-mismatch",
        "a record whose width/height are not its image's",
        _with_images([_record("0", "img/0.png", [SQUARE], 640, 480)]),
        SKIPPED_ALL.replace("{why}", "size_mismatch"),
    ),
    Case(
        "pairs-no-image-in-object-range",
        "min_objects that no image reaches",
        _with_images(source={"min_objects": 5}),
        "source: none of the 2 images of {images} has between min_objects 5 and max_objects 1000 annotated objects",
    ),
    Case(
        "pairs-duplicate-description-id",
        "two descriptions under one description_id",
        _with_images(descriptions=[("0#d0", "0", "There is a red square."), ("0#d0", "1", "There is a dog.")]),
        "{descriptions}:2: field 'description_id': '0#d0' repeats line 1; ids must be unique",
    ),
    Case(
        "pairs-rewrite-k-negative",
        "`rewrite.k: -1`",
        _with_images(rewrite={"k": -1}),
        "{config}: rewrite.k: Input should be greater than or equal to 0",
    ),
    Case(
        "pairs-describe-without-model",
        "images to describe and no describe.model",
        _with_images(descriptions=()),
        "describe.model: the target model (a folder or hub id) is needed to describe images",
    ),
    Case(
        "pairs-describe-model-missing",
        "describe.model naming a folder that does not exist",
        lambda ctx: _with_images(descriptions=(), describe={"model": str(ctx.path("model", "runs/base/model"))})(ctx),
        "model {model}: no such model folder (nor a hub id 'org/name')",
    ),
    Case(
        "pairs-judge-before-describe",
        "`hadpo pairs judge` before any description",
        lambda ctx: (_images(ctx), ctx.path("descriptions", "out/descriptions.jsonl"), _build(ctx, verb="judge"))[2],
        "{descriptions}: not found; 'hadpo pairs judge' reads what 'hadpo pairs describe' writes (or run 'hadpo pairs "
        "build')",
    ),
    Case(
        "pairs-no-pairs",
        "descriptions without a hallucination (nothing to prefer)",
        _with_images(),
        NO_PAIRS,
        code=1,
        absent=("out/pairs.jsonl",),
    ),
    Case(
        "pairs-no-pairs-keeps-old",
        "the same, over the pairs.jsonl of an earlier run",
        _pairs_exist_already,
        NO_PAIRS,
        code=1,
    ),
    Case(
        "pairs-coco-without-instances",
        "`source.kind: coco` without `instances`",
        lambda ctx: _build(ctx, source={"kind": "coco", "images": str(ctx.tmp)}),
        "source.kind coco needs source.instances",
    ),
    Case(
        "pairs-coco-unknown-category",
        "a COCO annotation whose category_id is not in categories",
        lambda ctx: _coco(
            ctx,
            {
                "images": COCO_IMAGES,
                "categories": [{"id": 1, "name": "cup"}],
                "annotations": [{"id": 7, "image_id": 1, "category_id": 99, "bbox": [1, 1, 9, 9]}],
            },
        ),
        "{instances}: annotation 7: field 'category_id': 99 is not in categories",
    ),
    Case(
        "pairs-coco-missing-key",
        "a COCO annotation without its bbox",
        lambda ctx: _coco(
            ctx,
            {
                "images": COCO_IMAGES,
                "categories": [{"id": 1, "name": "cup"}],
                "annotations": [{"id": 7, "image_id": 1, "category_id": 1}],
            },
        ),
        "{instances}: not COCO instances JSON (images, annotations, categories): missing key 'bbox'",
    ),
    Case(
        "pairs-vg-not-json",
        "a truncated Visual Genome objects.json",
        _vg_not_json,
        "{objects}:2: not valid JSON (Expecting value, column 1)",
    ),
    Case(
        "import-nothing",
        "`hadpo pairs import` without desc_data or pope_data",
        lambda ctx: _import(ctx),
        "import: give desc_data.json and/or pope_data.json",
    ),
    Case(
        "import-not-json",
        "a desc_data.json that is not JSON",
        lambda ctx: _import(ctx, desc="{'image_id': 7}"),
        "{desc}:1: not valid JSON (Expecting property name enclosed in double quotes, column 2)",
    ),
    Case(
        "import-not-a-list",
        "a desc_data.json holding a number",
        lambda ctx: _import(ctx, desc="42"),
        "{desc}: expected a JSON list of entries or an object {image_id: entry}, got int",
    ),
    Case(
        "import-identical-texts",
        "release entries whose chosen equals rejected",
        lambda ctx: _import(
            ctx,
            desc=json.dumps([{"image_id": 7, "chosen": ["Same."], "rejected": ["Same."]}]),
            pope=json.dumps(
                [{"image_id": 7, "question": "Is there a cat?", "answer": "no", "chosen": "No.", "reject": "No."}]
            ),
        ),
        "no pairs imported from 1 desc_data and 1 pope_data entries (skipped: identical_texts 2; 0 marked correct); "
        "{output} not written",
        code=1,
        absent=("imported/pairs.jsonl",),
    ),
    Case(
        "import-count-mismatch",
        "3 chosen rewrites against 1 rejected",
        lambda ctx: _import(ctx, desc=json.dumps([{"image_id": 7, "chosen": ["A.", "B.", "C."], "rejected": ["D."]}])),
        "no pairs imported from 1 desc_data and 0 pope_data entries (skipped: count_mismatch 1; 0 marked correct); "
        "{output} not written",
        code=1,
    ),
    Case(
        "import-image-dir-missing",
        "an --image-dir that does not exist",
        lambda ctx: _import(ctx, desc="[]", image_dir="no/such/folder"),
        "--image-dir {image_dir}: not a folder",
    ),
    Case(
        "import-output-is-a-folder",
        "an --output that is a folder",
        _import_output_is_a_folder,
        "--output {output}: is a folder; give the pairs.jsonl file to write",
    ),
    Case(
        "llm-key-refused",
        "a wrong API key: the endpoint answers 401 (and echoes the key)",
        lambda ctx: _llm(ctx, ("echo_key", 401)),
        "{url} refused the request (AuthenticationError, HTTP 401: Incorrect API key provided: [redacted].); check "
        "the key in $HADPO_TEST_KEY, base_url and model 'fake'",
        code=1,
        absent=("out/judgements.jsonl",),
    ),
    Case(
        "llm-forbidden",
        "the endpoint answers 403 to every request",
        lambda ctx: _llm(ctx, 403),
        "{url} refused the request (PermissionDeniedError, HTTP 403: scripted 403); check the key in "
        "$HADPO_TEST_KEY, base_url and model 'fake'",
        code=1,
    ),
    Case(
        "llm-every-answer-malformed",
        "the endpoint answers every request with an HTML page (HTTP 200)",
        lambda ctx: _llm(ctx, ("raw", 200, "text/html", b"<html><body>Bad gateway</body></html>")),
        "no pairs: 0 descriptions judged usable (2 judgements failed), 0 with a hallucination, 0 rewrite pairs kept; "
        "skipped: judge_failed 2; dropped: none counted (see {out}/stats.json)",
        code=1,
    ),
]


@pytest.fixture(scope="module")
def server():
    with FakeChatServer() as running:
        yield running


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_pairs_input_is_one_line(case, tmp_path, monkeypatch, server, capsys):
    run_case(case, Context(tmp_path, monkeypatch, server), capsys)


def test_every_case_is_in_the_docs():
    check_documented(CASES)


# --- the judge client -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ("raw", 200, "text/html", b"<html>upstream error</html>"),
        ("raw", 200, "application/json", b'{"id": "x", "choices": [{"ind'),
        ("raw", 200, "application/json", b'{"object": "chat.completion"}'),
        ("raw", 200, "application/json", b'{"choices": [{"index": 0, "message": null}]}'),
    ],
    ids=["html", "truncated-json", "no-choices", "no-message"],
)
def test_a_malformed_answer_is_retried_then_fails_its_record(server, body, monkeypatch):
    monkeypatch.setattr(llm_client.time, "sleep", lambda seconds: None)
    server.script[:] = [body, "a good answer"]
    client = LLMClient(LLMConfig(base_url=server.base_url, model="fake", max_retries=1))
    assert client.complete([{"role": "user", "content": "hi"}]).text == "a good answer"
    assert client.usage.errors == {"MalformedResponse": 1} and client.usage.retries == 1
    server.script[:] = [body, body]
    with pytest.raises(LLMError, match=r"^malformed response after 2 attempts \("):
        client.complete([{"role": "user", "content": "again"}])
    assert client.usage.transport_failures == 1
    server.script.clear()


def test_a_refused_key_stops_the_run_after_the_requests_in_flight(tmp_path, monkeypatch, server, capsys):
    ctx = Context(tmp_path, monkeypatch, server)
    argv = _llm(ctx, 401)
    _descriptions(ctx, [(f"{i}#d{j}", str(i), "There is a red square.") for i in (0, 1) for j in range(5)])
    requests = len(server.requests)
    assert main(argv) == 1
    assert len(server.requests) - requests == 1  # one request in flight (max_concurrency 1), then none
    assert not (tmp_path / "out" / "judgements.jsonl").exists()


def test_the_api_key_never_reaches_a_file_stderr_or_a_log(tmp_path, monkeypatch, server, capsys, caplog):
    """The endpoint quotes the key in its error messages: in a 400 (each record fails, its reason is written to
    judgements.jsonl and events.jsonl, logged, and the build ends without pairs) and in a 401 (the run stops; the
    message goes to stderr)."""
    ctx = Context(tmp_path, monkeypatch, server)
    argv = _llm(ctx, ("echo_key", 400))
    assert main(argv) == 1
    judged = (tmp_path / "out" / "judgements.jsonl").read_text()
    assert "Incorrect API key provided: [redacted]" in judged
    server.responder = lambda body: ("echo_key", 401)
    assert main([*argv, "judge.retry_failed=true"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401: Incorrect API key provided: [redacted]" in err
    outputs = {str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()}
    windows = {KEY[i : i + 8] for i in range(len(KEY) - 7)}
    for where, text in {"stderr": err, "log": caplog.text, **outputs}.items():
        assert not any(window in text for window in windows), where


def test_http_requests_are_logged_at_debug_level_only(tmp_path, monkeypatch, server, capsys, caplog):
    ctx = Context(tmp_path, monkeypatch, server)
    argv = _llm(ctx, None)
    server.responder = valid_judge_answer
    caplog.set_level("INFO")
    requests = len(server.requests)
    main(argv)
    assert len(server.requests) > requests and "HTTP Request" not in caplog.text


# --- resume after a kill: a torn last line ------------------------------------------------------------------------


def _tear(path: Path) -> None:
    """Cut the file inside its last line, as a kill in the middle of an append leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 1 + 7])


def test_resume_after_a_crash_drops_a_torn_last_line_and_redoes_it(tmp_path, monkeypatch, capsys, caplog):
    ctx = Context(tmp_path, monkeypatch)
    _images(ctx)
    rows = [
        ("0#d0", "0", "There is a red square and a cup."),
        ("1#d0", "1", "There is a blue cup and a dog."),
        ("1#d1", "1", "There is a red square. There is a star."),
    ]
    _descriptions(ctx, rows)
    argv = _build(ctx)
    assert main(argv) == 0
    out = tmp_path / "out"
    done = {name: (out / name).read_bytes() for name in ("judgements.jsonl", "rewrites.jsonl", "pairs.jsonl")}
    for name in ("judgements.jsonl", "rewrites.jsonl", "events.jsonl"):
        _tear(out / name)
    assert main(argv) == 0
    assert {name: (out / name).read_bytes() for name in done} == done  # redone as the uninterrupted run did
    assert caplog.text.count("last line is incomplete (interrupted run); dropped and redone") == 3


def test_resume_after_a_crash_redoes_a_torn_description(tmp_path, monkeypatch, tiny_model_dir, capsys, caplog):
    ctx = Context(tmp_path, monkeypatch)
    _images(ctx)
    argv = _build(
        ctx, describe={"model": str(tiny_model_dir), "per_image": 1, "max_new_tokens": 4}, qa={"enabled": False}
    )
    main(argv)  # the random model hallucinates nothing: no pairs (exit 1), its descriptions kept
    out = tmp_path / "out"
    kept = (out / "descriptions.jsonl").read_text()
    _tear(out / "descriptions.jsonl")  # the model's answer is whole: the description is rebuilt from it
    main(argv)
    assert (out / "descriptions.jsonl").read_text() == kept
    _tear(out / "descriptions.jsonl")
    _tear(out / "describe_answers.jsonl")  # both cut: the model answers again
    main(argv)
    again = (out / "descriptions.jsonl").read_text().splitlines()
    assert len(again) == 2 and again[0] == kept.splitlines()[0]
    for name in ("descriptions.jsonl", "describe_answers.jsonl"):
        assert f"{name}: last line is incomplete (interrupted run); dropped and redone" in caplog.text
