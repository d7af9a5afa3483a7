"""Run a model on the benchmarks and record the results: the glue between `hadpo.inference` and each
benchmark's scoring, one function per `hadpo eval` verb. Every function writes its raw model outputs (JSONL),
its per-item detail, and merges its section into `out_dir/results.json` (+ results.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from hadpo.errors import RunFailed
from hadpo.evaluate import chair, mme, pope, report, shr
from hadpo.inference import DecodingConfig, Query, load_model, mode_agreement, run_queries
from hadpo.judge.base import Judge
from hadpo.judge.config import JudgeConfig, make_judge
from hadpo.records import Answer, ImageRecord, RecordError, read_jsonl, write_jsonl

log = logging.getLogger(__name__)


def _split_name(path: Path, questions: list[pope.PopeQuestion]) -> str:
    if questions and questions[0].split:
        return questions[0].split
    stem = path.stem
    return next((s for s in pope.SPLITS if stem.endswith(s)), stem)


def run_pope(
    model_path: str,
    question_files: list[str | Path],
    out_dir: str | Path,
    config: DecodingConfig,
    image_root: str | Path | None = None,
    strict: bool = False,
    progress: bool = True,
    protocol: str = "reference",
) -> dict:
    """Answer every POPE question file (images under `image_root`, by default beside each question file), score
    each split and their mean. Answers go to `out_dir/answers_<split>_<mode>.jsonl` (resumable)."""
    out_dir = Path(out_dir)
    model, processor = load_model(model_path, config.device, config.dtype)
    splits, agreement, skipped, files = {}, {}, {"questions": 0, "images": 0}, {}
    known: dict[tuple[str, str], Answer] = {}  # (image, question) -> answer, shared by the splits
    for file in map(Path, question_files):
        questions, bad = pope.read_questions(file)
        root = Path(image_root) if image_root is not None else file.parent
        split = _split_name(file, questions)
        if split in splits:  # two files of the same split (e.g. COCO and A-OKVQA random): keep both apart
            split = file.stem
        answers = out_dir / f"answers_{split}_{config.mode}.jsonl"
        queries = [Query(q.question_id, root / q.image, q.text, image_id=q.image) for q in questions]
        if not config.do_sample:
            _reuse_answers(queries, answers, known, config, str(model_path))
        summary = run_queries(model, processor, queries, answers, config, model_name=str(model_path), progress=progress)
        answered = _answers_by_query(queries, answers)
        if not answered:
            raise RunFailed(f"{file}: no question answered ({summary.skipped} images unreadable under {root})")
        known.update({(str(q.image), q.prompt): a for q, a in answered})
        # Questions whose image could not be read are counted in skipped_detail, and left out of the scores.
        splits[split] = pope.score_pope(file, answers, strict=strict, protocol=protocol, missing="skip")
        files[split] = {"questions": str(file), "answers": str(answers)}
        other = out_dir / f"answers_{split}_{'logits' if config.mode == 'generate' else 'generate'}.jsonl"
        if other.exists():  # both modes run on this split: record how often they agree (issue 3)
            pair = (answers, other) if config.mode == "generate" else (other, answers)
            agreement[split] = pope_mode_agreement(*pair)
        skipped["questions"] += bad
        skipped["images"] += summary.skipped
    result = {
        "parsing": "strict" if strict else "official",
        "protocol": protocol,
        "mode": config.mode,
        "splits": splits,
        "mean": pope.mean_over_splits(splits),
        "skipped": sum(skipped.values()),
        "skipped_detail": skipped,
        "runner": config.generation_settings(),
        "mode_agreement": agreement,
        "files": files,
    }
    report.update_results(out_dir, "pope", result, model=str(model_path))
    return result


def _answers_by_query(queries: list[Query], answers: Path) -> list[tuple[Query, Answer]]:
    by_id = {a.question_id: a for a in read_jsonl(answers, Answer)} if answers.exists() else {}
    return [(q, by_id[q.question_id]) for q in queries if q.question_id in by_id]


def _reuse_answers(queries: list[Query], answers: Path, known: dict, config: DecodingConfig, model: str) -> None:
    """The three splits ask the same positives (and often the same negatives) about the same images: with
    deterministic decoding an answer already given in this run is copied, not computed again."""
    done = {a.question_id for _, a in _answers_by_query(queries, answers)}
    copies = [
        known[(str(q.image), q.prompt)].model_copy(update={"question_id": q.question_id})
        for q in queries
        if q.question_id not in done and (str(q.image), q.prompt) in known
    ]
    copies = [c for c in copies if c.model == model and c.generation == config.generation_settings()]
    if copies:
        write_jsonl(answers, copies, append=True)


def score_pope_answers(
    questions: str | Path,
    answers: str | Path,
    out_dir: str | Path | None = None,
    strict: bool = False,
    protocol: str = "reference",
    model: str = "",
) -> dict:
    """Score one split's answers you have; with `out_dir`, merge it into the pope section of results.json (as the
    split named in the question file) so that reports and exports see it."""
    metrics = pope.score_pope(questions, answers, strict=strict, protocol=protocol)
    if not metrics["n"]:  # metrics of nothing read 0.00: a file that could not be scored is no result
        why = "empty, left out by the hadpo protocol" if metrics["empty_answers"] else "without an answer text"
        raise RecordError(f"{answers}: no answer could be scored ({metrics['skipped_answers']} skipped: {why})")
    if out_dir is not None:
        split = _split_name(Path(questions), pope.read_questions(questions)[0])
        section = (
            report.load_results(out_dir, with_results=False).get("pope", {})
            if (Path(out_dir) / "results.json").exists()
            else {}
        )
        splits = section.get("splits", {}) | {split: metrics}
        files = section.get("files", {}) | {split: {"questions": str(questions), "answers": str(answers)}}
        section |= {
            "parsing": metrics["parsing"],
            "protocol": protocol,
            "splits": splits,
            "mean": pope.mean_over_splits(splits),
            "files": files,
        }
        report.update_results(out_dir, "pope", section, model=model)
    return metrics


def pope_mode_agreement(generated: str | Path, logits: str | Path) -> dict:
    """The generate / logits agreement of two answer files over the same questions (issue 3's must-show)."""
    return mode_agreement(read_jsonl(generated, Answer), read_jsonl(logits, Answer))


def run_chair(
    captions: str | Path,
    annotations: str | Path,
    out_dir: str | Path,
    reference_captions: str | Path | None = None,
    model: str = "",
    protocol: str = "reference",
    synonyms: str | Path | dict | None = None,
    several_per_image: bool = False,
) -> dict:
    """Score captions with CHAIR (`protocol`: "reference" or "hadpo"; `synonyms`: a vocabulary in place of the
    protocol's COCO table, e.g. a dataset's own category names; `several_per_image`: score every caption of an
    image, else a second one is an error) and write chair_detail.jsonl."""
    result = chair.evaluate_chair(captions, annotations, reference_captions, protocol, synonyms, several_per_image)
    chair.write_details(Path(out_dir) / "chair_detail.jsonl", result)
    metrics = result.metrics() | {"captions_file": str(captions)}
    report.update_results(out_dir, "chair", metrics, model=model)
    return metrics


def run_shr(
    descriptions: str | Path,
    images_file: str | Path,
    judge: Judge | JudgeConfig,
    out_dir: str | Path,
    model: str = "",
    progress: bool = True,
) -> dict:
    """Judge the descriptions with `judge` (a judge, or the config `hadpo.judge.config.make_judge` builds one
    from, over these images) and write shr_judgements.jsonl."""
    triples, unreadable = shr.read_descriptions(descriptions)
    images = {r.image_id: r for r in read_jsonl(images_file, ImageRecord)}
    if isinstance(judge, JudgeConfig):
        judge = make_judge(judge, images.values())
    result, judgements = shr.evaluate_shr(triples, images, judge, progress=progress)
    result.skipped += unreadable
    write_jsonl(Path(out_dir) / "shr_judgements.jsonl", judgements)
    metrics = result.metrics() | {"descriptions_file": str(descriptions)}
    report.update_results(out_dir, "shr", metrics, model=model)
    return metrics


def run_mme(
    model_path: str,
    root: str | Path,
    out_dir: str | Path,
    config: DecodingConfig,
    progress: bool = True,
    protocol: str = "reference",
) -> dict:
    """Answer the MME questions under `root`, write the official per-subtask result files to
    `out_dir/mme_results/`, and score them."""
    out_dir = Path(out_dir)
    questions, skipped = mme.read_mme(root)
    queries = [Query(q.question_id, q.image_path, q.question, image_id=f"{q.subtask}/{q.image}") for q in questions]
    answers_path = out_dir / f"answers_mme_{config.mode}.jsonl"
    model, processor = load_model(model_path, config.device, config.dtype)
    summary = run_queries(
        model, processor, queries, answers_path, config, model_name=str(model_path), progress=progress
    )
    answers = {a.question_id: a.text for a in read_jsonl(answers_path, Answer)}
    per_subtask: dict[str, list[mme.MMEResult]] = {}
    for q in questions:
        if q.question_id in answers:
            per_subtask.setdefault(q.subtask, []).append(
                mme.MMEResult(q.image, q.question, q.answer, answers[q.question_id])
            )
    for subtask, rows in per_subtask.items():
        mme.write_results(out_dir / "mme_results", subtask, rows)
    return score_mme_folder(
        out_dir / "mme_results",
        out_dir,
        model=str(model_path),
        extra_skipped=skipped + summary.skipped,
        protocol=protocol,
    )


def score_mme_folder(
    results_dir: str | Path, out_dir: str | Path, model: str = "", extra_skipped: int = 0, protocol: str = "reference"
) -> dict:
    rows, skipped = mme.read_results(results_dir, protocol)
    scores = mme.score_mme(rows, protocol) | {"skipped": skipped + extra_skipped, "results_dir": str(results_dir)}
    report.update_results(out_dir, "mme", scores, model=model)
    return scores


def model_summary(
    pope: dict | None = None, heldout: dict | None = None, chair: dict | None = None, shr: dict | None = None
) -> dict:
    """One model's figures in one shape (fractions in 0-1), from what run_pope, run_chair and run_shr return; a
    benchmark not run is left out: {"pope": {split: {accuracy, precision, recall, f1, yes_ratio}}, "heldout":
    {split: accuracy}, "chair": {chair_s, chair_i, recall}, "coverage": CHAIR's recall, "shr": {shr,
    words_per_image, sentences_per_image}}."""
    summary: dict = {}
    if pope is not None:
        summary["pope"] = {split: {k: m[k] for k in report.POPE_METRICS} for split, m in pope["splits"].items()}
    if heldout is not None:
        summary["heldout"] = {split: metrics["accuracy"] for split, metrics in heldout["splits"].items()}
    if chair is not None:
        summary["chair"] = {k: chair[k] for k in ("chair_s", "chair_i", "recall")}
        summary["coverage"] = chair["recall"]
    if shr is not None:
        summary["shr"] = {k: shr[k] for k in ("shr", "words_per_image", "sentences_per_image")}
    return summary


def compare(before: str | Path, after: str | Path, out_dir: str | Path | None = None) -> str:
    """The before/after markdown table; with `out_dir`, also comparison.md and the plots there."""
    first, second = report.load_results(before), report.load_results(after)
    names = (first.get("model") or "before", second.get("model") or "after")
    if names[0] == names[1]:
        names = ("before", "after")
    table = report.compare_markdown(first, second, names)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.md").write_text(table, encoding="utf-8")
        report.plot_comparison({names[0]: first, names[1]: second}, out_dir)
    return table
