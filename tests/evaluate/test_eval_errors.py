"""Catalogue, `hadpo eval` and `hadpo report`: question, answer, caption and result files that would score other
answers than the model gave, or nothing at all, as plausible numbers; each is one line and exit 2
(docs/errors.md, "hadpo eval" and "hadpo report"). The reference protocols' own rules stay: an empty POPE answer
is a counted, reported case, not an error."""

from __future__ import annotations

import json

import pytest

from catalogue import Case, Context, check_documented, image, run_case
from hadpo.cli import main

QUESTIONS = [
    {"question_id": i, "image": "a.jpg", "text": f"Is there a {name} in the image?", "label": label}
    for i, (name, label) in enumerate([("dog", "yes"), ("cat", "no"), ("cup", "yes"), ("car", "no")], 1)
]


def _lines(rows) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def _answers(*texts) -> list[dict]:
    return [{"question_id": q["question_id"], "text": t} for q, t in zip(QUESTIONS, texts)]


def _score(questions=QUESTIONS, answers=None):
    answers = _answers("Yes", "No", "Yes", "No") if answers is None else answers

    def setup(ctx: Context) -> list[str]:
        q = ctx.write("questions", "pope_random.jsonl", _lines(questions))
        a = ctx.write("answers", "answers.jsonl", _lines(answers))
        return ["eval", "pope", "score", "--questions", str(q), "--answers", str(a)]

    return setup


def _official(*rows) -> list[dict]:
    return [{"question": question, "answer": answer} for question, answer in rows]


SHIFTED = _official(*[(q["text"], "yes") for q in QUESTIONS[1:]], ("Is there a bus in the image?", "no"))


def _coco(images=3, category_id=1) -> dict:
    names = ["dog", "cat", "cup", "car"]
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 48, "height": 48} for i in range(images)],
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)],
        "annotations": [
            {"id": 10 * i + k, "image_id": i, "category_id": category_id if k == 0 else k + 1, "bbox": [1, 1, 5, 5]}
            for i in range(images)
            for k in range(4)
        ],
    }


def _pope_build(*flags: str, data: dict | None = None):
    def setup(ctx: Context) -> list[str]:
        annotations = ctx.write("annotations", "instances.json", json.dumps(data or _coco()))
        return [
            "eval",
            "pope",
            "build",
            "--annotations",
            str(annotations),
            "--out",
            str(ctx.path("out", "pope")),
            *flags,
        ]

    return setup


def _pope_build_out_is_a_file(ctx: Context) -> list[str]:
    argv = _pope_build()(ctx)
    ctx.write("out", "pope", "a file\n")
    return argv


def _pope_run_model_missing(ctx: Context) -> list[str]:
    questions = ctx.write("questions", "pope_random.jsonl", _lines(QUESTIONS))
    return [
        "eval",
        "pope",
        "run",
        "--model",
        str(ctx.path("model", "runs/base/model")),
        "--questions",
        str(questions),
        "--out",
        str(ctx.path("out", "eval")),
    ]


def _mme_results(files: dict[str, str]):
    def setup(ctx: Context) -> list[str]:
        folder = ctx.path("results", "mme_results")
        folder.mkdir()
        for name, text in files.items():
            ctx.write(name.split(".")[0], f"mme_results/{name}", text)
        return ["eval", "mme", "--results", str(folder), "--out", str(ctx.path("out", "eval"))]

    return setup


def _mme_root(make):
    def setup(ctx: Context) -> list[str]:
        root = ctx.path("root", "MME")
        make(root)
        return ["eval", "mme", "--root", str(root), "--model", str(ctx.tmp), "--out", str(ctx.path("out", "eval"))]

    return setup


def _chair(captions: str, suffix: str = "jsonl", data: dict | None = None):
    def setup(ctx: Context) -> list[str]:
        annotations = ctx.write("annotations", "instances.json", json.dumps(data or _coco(2)))
        file = ctx.write("captions", f"captions.{suffix}", captions)
        return [
            "eval",
            "chair",
            "--captions",
            str(file),
            "--annotations",
            str(annotations),
            "--out",
            str(ctx.path("out", "eval")),
        ]

    return setup


def _shr(descriptions: str, records: list[dict] | None = None):
    def setup(ctx: Context) -> list[str]:
        image(ctx.tmp / "img" / "0.png")
        rows = (
            records
            if records is not None
            else [{"image_id": "0", "path": "img/0.png", "width": 48, "height": 48, "complete": True}]
        )
        images = ctx.write("images", "images.jsonl", _lines(rows))
        file = ctx.write("descriptions", "descriptions.jsonl", descriptions)
        return [
            "eval",
            "shr",
            "--descriptions",
            str(file),
            "--images",
            str(images),
            "--judge",
            "annotations",
            "--out",
            str(ctx.path("out", "eval")),
        ]

    return setup


def _shr_vg(image_data: str, regions: str):
    def setup(ctx: Context) -> list[str]:
        descriptions = ctx.write("descriptions", "descriptions.jsonl", _lines([{"image_id": "1", "text": "A dog."}]))
        return [
            "eval",
            "shr",
            "--descriptions",
            str(descriptions),
            "--judge",
            "annotations",
            "--vg-image-data",
            str(ctx.write("image_data", "image_data.json", image_data)),
            "--vg-regions",
            str(ctx.write("regions", "region_descriptions.json", regions)),
            "--out",
            str(ctx.path("out", "eval")),
        ]

    return setup


def _report(before: str, after: str | None = None, out: bool = False):
    def setup(ctx: Context) -> list[str]:
        first = ctx.write("before", "base/results.json", before)
        second = ctx.write("after", "tuned/results.json", after if after is not None else before)
        argv = ["report", str(first), str(second)]
        if out:
            argv += ["--out", str(ctx.write("out", "taken", "a file\n"))]
        return argv

    return setup


RESULTS = json.dumps({"model": "m", "pope": {"splits": {"random": {"accuracy": 0.8}}, "mean": {"accuracy": 0.8}}})

CASES = [
    Case("pope-questions-empty", "an empty question file", _score(questions=[]), "{questions}: no questions"),
    Case(
        "pope-questions-all-bad",
        "a question file whose every line is bad",
        _score(
            questions=[{"question_id": 1, "image": "a.jpg", "text": "Q?", "label": "maybe"}, "not json"],
            answers=[{"question_id": 1, "text": "yes"}],
        ),
        "{questions}: no questions (2 bad lines skipped)",
    ),
    Case(
        "pope-questions-duplicate-id",
        "two questions under one question_id",
        _score(questions=[*QUESTIONS, {**QUESTIONS[0], "text": "Is there a bus in the image?"}]),
        "{questions}:5: field 'question_id': 1 repeats line 1; answers are matched to questions by id",
    ),
    Case("pope-answers-empty", "an empty answer file", _score(answers=[]), "{answers}: no answers"),
    Case(
        "pope-answers-duplicate-id",
        "two answers to one question",
        _score(answers=[*_answers("Yes", "No", "Yes", "No"), {"question_id": 2, "text": "Yes"}]),
        "{answers}:5: field 'question_id': 2 repeats {answers}:2",
    ),
    Case(
        "pope-answers-missing",
        "an answer file without an answer to every question",
        _score(answers=_answers("Yes", "No", "Yes")),
        "{answers}: no answer to 1 of 4 questions (first: question_id 4); score complete answer files only",
    ),
    Case(
        "pope-answers-other-split",
        "answers to questions the question file does not hold",
        _score(answers=[*_answers("Yes", "No", "Yes", "No"), {"question_id": 9, "text": "No"}]),
        "{answers}:5: field 'question_id': 9 is not a question of the question file (answers of another split?)",
    ),
    Case(
        "pope-answers-not-json",
        "an answer line that is not JSON",
        _score(answers=[*_answers("Yes", "No", "Yes"), '{"question_id": 4, "text": "No"']),
        "{answers}:4: not valid JSON (Expecting ',' delimiter)",
    ),
    Case(
        "pope-answers-shifted",
        "official-format answers shifted by a line",
        _score(answers=SHIFTED),
        "{answers}:1: field 'question': 'Is there a cat in the image?' is not the question file's 'Is there a dog in "
        "the image?' (question_id 1): answers shifted?",
    ),
    Case(
        "pope-answers-count",
        "official-format answers one short",
        _score(answers=_official(*[(q["text"], "yes") for q in QUESTIONS[:3]])),
        "{answers}: 3 answers for 4 questions; the official format pairs them by line (write question_id with each "
        "answer to match them by id)",
    ),
    Case(
        "pope-answers-numbers",
        "answers whose text is a number (another tool's file?)",
        _score(answers=_answers(1, 0, 1, 0)),
        "{answers}:1: field 'text': 1 is not an answer text (a JSON string)",
    ),
    Case(
        "pope-answers-none-scored",
        "answers none of which has a text (each skipped with a warning)",
        _score(answers=[{"question_id": q["question_id"], "answer_text": "yes"} for q in QUESTIONS]),
        "{answers}: no answer could be scored (4 skipped: without an answer text)",
    ),
    Case(
        "pope-build-per-image-zero",
        "`pope build --per-image 0`",
        _pope_build("--per-image", "0"),
        "--per-image: must be at least 1, got 0",
        absent=("pope",),
    ),
    Case(
        "pope-build-num-images-zero",
        "`pope build --num-images 0`",
        _pope_build("--num-images", "0"),
        "--num-images: must be at least 1, got 0",
    ),
    Case(
        "pope-build-no-eligible-image",
        "annotations where no image has 3 objects",
        _pope_build(data={**_coco(), "annotations": _coco()["annotations"][:2]}),
        "{annotations}: no image of the 1 annotated has 3 or more distinct objects: no question can be built",
    ),
    Case(
        "pope-build-unknown-category",
        "a COCO annotation whose category_id is not in categories",
        _pope_build(data=_coco(category_id=99)),
        "{annotations}: annotations[0]: field 'category_id': 99 is not in categories",
    ),
    Case(
        "pope-build-out-is-a-file",
        "`--out` naming a file",
        _pope_build_out_is_a_file,
        "--out {out}: {out} exists and is not a folder",
    ),
    Case(
        "pope-run-model-missing",
        "`--model` naming a folder that does not exist",
        _pope_run_model_missing,
        "model {model}: no such model folder (nor a hub id 'org/name')",
        absent=("eval",),
    ),
    Case(
        "mme-root-missing",
        "`mme --root` that does not exist",
        _mme_root(lambda root: None),
        "--root {root}: not a folder",
    ),
    Case(
        "mme-root-without-subtasks",
        "an MME root without subtask folders",
        _mme_root(lambda root: root.mkdir()),
        "--root {root}: no MME subtask folder in it (expected existence, count, position, ...)",
    ),
    Case(
        "mme-results-empty-folder",
        "an empty results folder",
        _mme_results({}),
        "--results {results}: no <subtask>.txt result files in it",
        absent=("eval",),
    ),
    Case(
        "mme-results-empty-subtask",
        "a subtask's result file without lines",
        _mme_results({"existence.txt": ""}),
        "{existence}: no result lines",
    ),
    Case(
        "mme-results-unknown-names",
        "result files none of which is an MME subtask",
        _mme_results({"colour.txt": "a.jpg\tIs it red?\tyes\tyes\na.jpg\tIs it blue?\tno\tno\n"}),
        "--results {results}: no file is named after an MME subtask (existence, count, position, ...): perception and "
        "cognition would be 0",
    ),
    Case("chair-captions-empty", "an empty captions file", _chair(""), "{captions}: no captions"),
    Case(
        "chair-caption-twice",
        "the same caption line twice",
        _chair(
            _lines(
                [
                    {"image_id": 0, "caption": "A dog."},
                    {"image_id": 1, "caption": "A cat."},
                    {"image_id": 0, "caption": "A dog."},
                ]
            )
        ),
        "{captions}:3: caption of image 0 repeats {captions}:1",
    ),
    Case(
        "chair-answer-id-twice",
        "two answer records under one question_id",
        _chair(
            _lines(
                [
                    {"question_id": "q1", "image_id": 0, "text": "A dog."},
                    {"question_id": "q1", "image_id": 1, "text": "A cat."},
                ]
            )
        ),
        "{captions}:2: caption of image 1 repeats {captions}:1",
    ),
    Case(
        "chair-image-twice",
        "two captions for one image_id (two runs in one file?)",
        _chair(_lines([{"image_id": 0, "caption": "A dog."}, {"image_id": 0, "caption": "A cat on a bench."}])),
        "{captions}:2: a second caption of image 0 (the first: {captions}:1); CHAIR scores one caption per image "
        "(--several-per-image scores each, as the reference code does)",
    ),
    Case(
        "chair-unknown-images",
        "captions whose image_ids are not in the annotations",
        _chair(_lines([{"image_id": 7, "caption": "A dog."}, {"image_id": 8, "caption": "A cat."}])),
        "{captions}: no caption could be scored (2 skipped: their image_ids are not images of {annotations}?)",
    ),
    Case(
        "chair-unknown-category",
        "a COCO annotation whose category_id is not in categories",
        _chair(_lines([{"image_id": 0, "caption": "A dog."}]), data=_coco(2, category_id=99)),
        "{annotations}: annotations[0]: field 'category_id': 99 is not in categories",
    ),
    Case(
        "chair-results-not-a-list",
        "a COCO results file that is an object",
        _chair('{"image_id": 0}', "json"),
        "{captions}: expected the COCO results format, a JSON list of {image_id, caption}",
    ),
    Case("shr-descriptions-empty", "an empty descriptions file", _shr(""), "{descriptions}: no descriptions"),
    Case(
        "shr-unknown-images",
        "descriptions of images not in --images",
        _shr(_lines([{"image_id": "9", "text": "A dog."}])),
        "no description to judge: all 1 skipped (unknown images or empty texts)",
    ),
    Case(
        "shr-judge-unknown-key",
        "a misspelt judge config key in `--judge-set`",
        lambda ctx: [*_shr(_lines([{"image_id": "0", "text": "A dog."}]))(ctx), "--judge-set", "llm.modle=x"],
        "the --judge options: llm: unknown key 'modle' (did you mean 'model'?)",
    ),
    Case(
        "shr-vg-not-json",
        "a truncated Visual Genome image_data.json",
        _shr_vg('[{"image_id": 1, ', "[]"),
        "{image_data}:1: not valid JSON (Expecting property name enclosed in double quotes, column 18)",
    ),
    Case(
        "shr-vg-region-without-box",
        "a Visual Genome region without its box",
        _shr_vg("[]", json.dumps([{"id": 1, "regions": [{"image_id": 1, "phrase": "a dog"}]}])),
        "{regions}: not Visual Genome region_descriptions.json: missing key 'x'",
    ),
    Case(
        "report-empty-results",
        "`hadpo report` on `{}`",
        _report("{}"),
        "{before}: no benchmark results in it (sections pope, chair, shr, mme): nothing to compare",
        absent=("tuned/comparison",),
    ),
    Case(
        "report-metric-not-a-number",
        'a metric whose value is "high" (it would show as "-")',
        _report(RESULTS, json.dumps({"model": "m", "shr": {"shr": "high"}})),
        "{after}: shr.shr: 'high' is not a number (a metric is a number, or null)",
        absent=("tuned/comparison",),
    ),
    Case(
        "report-not-json",
        "a results.json that is not JSON",
        _report(RESULTS, '{"pope": '),
        "{after}:1: not valid JSON (Expecting value, column 10)",
    ),
    Case(
        "report-missing",
        "a results.json that does not exist",
        lambda ctx: ["report", str(ctx.write("before", "a/results.json", RESULTS)), str(ctx.path("after", "b.json"))],
        "{after}: no such file or directory",
    ),
    Case(
        "report-out-is-a-file",
        "`--out` naming a file",
        _report(RESULTS, out=True),
        "--out {out}: {out} exists and is not a folder",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_evaluation_input_is_one_line(case, tmp_path, monkeypatch, capsys):
    run_case(case, Context(tmp_path, monkeypatch), capsys)


def test_every_case_is_in_the_docs():
    check_documented(CASES)


def test_an_empty_answer_stays_a_counted_case_of_the_reference_protocol(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    answers = tmp_path / "a.jsonl"
    questions.write_text(_lines(QUESTIONS))
    answers.write_text(_lines(_answers("Yes", "No", "", "No")))
    assert main(["eval", "pope", "score", "--questions", str(questions), "--answers", str(answers), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["n"], metrics["empty_answers"], metrics["accuracy"]) == (4, 1, 1.0)
