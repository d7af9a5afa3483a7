"""`hadpo eval`: POPE (build / run / score / agreement), CHAIR, SHR and MME. Parses arguments and calls
`hadpo.evaluate`; protocols are described in docs/evaluation.md. The options several verbs share are in
`hadpo.cli.options`; each verb imports its benchmark when it runs (the parser is built on every `hadpo` call)."""

from __future__ import annotations

from pathlib import Path

from hadpo.cli.options import (
    check_out,
    decoding,
    export,
    export_argument,
    judge_arguments,
    judge_config,
    model_arguments,
    print_json,
    protocol_argument,
)

POPE_SCORING = "reference: an empty answer is read as 'yes' as evaluate.py does; hadpo: it is left out"


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model: POPE, CHAIR, SHR, MME")
    verbs = parser.add_subparsers(dest="benchmark", required=True)
    _register_pope(verbs.add_parser("pope", help="POPE yes/no object probing"))
    _register_chair(verbs.add_parser("chair", help="CHAIR object hallucination in captions"))
    _register_shr(verbs.add_parser("shr", help="SHR sentence-level hallucination ratio with a judge"))
    _register_mme(verbs.add_parser("mme", help="MME perception and cognition scores"))


def _register_pope(parser) -> None:
    pope = parser.add_subparsers(dest="pope_verb", required=True)
    build = pope.add_parser("build", help="build random/popular/adversarial question files from object annotations")
    build.add_argument(
        "--annotations",
        required=True,
        help="COCO instances JSON, Visual Genome objects.json, or an images.jsonl of ImageRecords",
    )
    build.add_argument("--out", required=True, help="folder for <prefix>_<split>.jsonl and the manifest")
    build.add_argument("--num-images", type=int, default=500, help="images sampled (official: 500)")
    build.add_argument("--per-image", type=int, default=3, help="positives (and negatives) per image (official: 3)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--splits", nargs="+", default=["random", "popular", "adversarial"])
    build.add_argument("--prefix", default="pope")
    protocol_argument(
        build,
        "reference: RUCAIBox/POPE utils.py (input order, one random stream, ties in order of "
        "appearance); hadpo: images in id order, a stream per split, ties alphabetical",
    )
    build.set_defaults(func=_pope_build)

    run = pope.add_parser("run", help="answer POPE question files with a model and score them")
    run.add_argument("--questions", nargs="+", required=True, help="POPE question files (one per split)")
    run.add_argument(
        "--image-root",
        help="folder the question files' image paths are relative to (default: each question file's folder)",
    )
    run.add_argument("--strict", action="store_true", help="strict parsing: only a leading yes/no counts")
    protocol_argument(run, POPE_SCORING)
    export_argument(run)
    model_arguments(run, max_new_tokens=16, num_beams=1)
    run.set_defaults(func=_pope_run)

    score = pope.add_parser("score", help="score answers you already have")
    score.add_argument("--questions", required=True, help="POPE question/label file (JSON lines)")
    score.add_argument(
        "--answers",
        required=True,
        help='answers: official {"question", "answer"} lines in label order, or {"question_id", "text"}',
    )
    score.add_argument("--strict", action="store_true", help="strict parsing: only a leading yes/no counts")
    score.add_argument("--json", action="store_true", help="print the metrics as JSON (fractions)")
    protocol_argument(score, POPE_SCORING)
    score.add_argument("--out", help="merge the split into OUT/results.json (needed by --export)")
    score.add_argument("--model", default="", help="the model's name in results.json and exports")
    export_argument(score)
    score.set_defaults(func=_pope_score)

    agreement = pope.add_parser("agreement", help="generate vs logits mode agreement on the same questions")
    agreement.add_argument("--generated", required=True, help="answers written in generate mode")
    agreement.add_argument("--logits", required=True, help="answers written in logits mode")
    agreement.set_defaults(func=_pope_agreement)


def _register_chair(chair) -> None:
    chair.add_argument("--captions", help="captions: JSON lines with image_id + text/caption, or COCO results JSON")
    chair.add_argument("--annotations", required=True, help="COCO instances JSON or an images.jsonl of ImageRecords")
    chair.add_argument("--reference-captions", help="COCO captions JSON whose objects join the ground truth")
    chair.add_argument("--images", help="images.jsonl to describe with --model (default: --annotations)")
    chair.add_argument("--prompt", default="Describe this image in detail.")
    chair.add_argument("--synonyms", help="object vocabulary in place of the COCO list: lines 'name, synonym, ...'")
    chair.add_argument(
        "--several-per-image",
        action="store_true",
        help="score every caption of an image, as the reference code does (default: a second caption of an "
        "image_id is an error, CHAIR scores one caption per image)",
    )
    protocol_argument(
        chair,
        "reference: LisaAnne/Hallucination utils/chair.py (NLTK tokens, pattern singulars, its "
        "synonym list and rules); hadpo: hadpo's reviewed list and lemminflect singulars",
    )
    export_argument(chair)
    model_arguments(chair, max_new_tokens=512, num_beams=1, required=False)
    chair.set_defaults(func=_chair)


def _register_shr(shr) -> None:
    shr.add_argument("--descriptions", help="descriptions: JSON lines with image_id + text, or {image_id: text} JSON")
    shr.add_argument("--images", help="images.jsonl of ImageRecords (regions, objects, notes)")
    shr.add_argument("--vg-image-data", help="instead of --images: Visual Genome image_data.json ...")
    shr.add_argument("--vg-regions", help="... with region_descriptions.json ...")
    shr.add_argument("--shr-factual", nargs="*", default=[], help="... the SHR factual notes (shr_factual_part*.jsonl)")
    shr.add_argument("--shr-images", help="... the SHR image list (val_images_final.json)")
    shr.add_argument("--vg-root", help="... and the folder holding VG_100K/ and VG_100K_2/ (to describe images)")
    shr.add_argument("--prompt", default="Describe this image in detail.")
    judge_arguments(shr)
    # The HA-DPO release decodes SHR descriptions with beam 5.
    model_arguments(shr, max_new_tokens=512, num_beams=5, required=False)
    shr.set_defaults(func=_shr)


def _register_mme(mme) -> None:
    mme.add_argument("--root", help="MME benchmark folder (one folder per subtask)")
    mme.add_argument("--results", help="score existing per-subtask result files (image, question, gt, prediction)")
    protocol_argument(
        mme,
        "reference: calculation.py (consecutive lines pair, the prediction as written, a "
        "malformed line is an error); hadpo: stripped predictions, pairs by image name, bad lines "
        "skipped",
    )
    export_argument(mme)
    model_arguments(mme, max_new_tokens=16, num_beams=1, required=False)
    mme.set_defaults(func=_mme)


def _pope_build(args) -> int:
    check_out(args)
    from hadpo.evaluate.pope import build_pope_files

    paths = build_pope_files(
        args.annotations,
        args.out,
        num_images=args.num_images,
        per_image=args.per_image,
        seed=args.seed,
        splits=args.splits,
        prefix=args.prefix,
        protocol=args.protocol,
    )
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _pope_run(args) -> int:
    check_out(args)
    from hadpo.evaluate.report import results_markdown
    from hadpo.evaluate.suite import run_pope

    result = run_pope(
        args.model,
        args.questions,
        args.out,
        decoding(args),
        image_root=args.image_root,
        strict=args.strict,
        progress=not args.no_progress,
        protocol=args.protocol,
    )
    print(results_markdown({"model": args.model, "pope": result}), end="")
    export(args)
    return 0


def _pope_score(args) -> int:
    if args.out:
        check_out(args)
    from hadpo.evaluate.pope import METRIC_NAMES
    from hadpo.evaluate.suite import score_pope_answers

    if args.export and not args.out:
        raise ValueError("hadpo eval pope score --export needs --out (the folder the exports go to)")
    metrics = score_pope_answers(
        args.questions, args.answers, args.out, strict=args.strict, protocol=args.protocol, model=args.model
    )
    if args.json:
        print_json(metrics)
    else:
        for name in METRIC_NAMES:
            print(f"{name:<10} {100 * metrics[name]:6.2f}")
        print(
            f"scored {metrics['n']}, empty answers {metrics['empty_answers']}, skipped questions "
            f"{metrics['skipped_questions']}, skipped answers {metrics['skipped_answers']} ({metrics['parsing']} "
            f"parsing, {metrics['protocol']} protocol)"
        )
    export(args)
    return 0


def _pope_agreement(args) -> int:
    from hadpo.evaluate.suite import pope_mode_agreement

    print_json(pope_mode_agreement(args.generated, args.logits))
    return 0


def _chair(args) -> int:
    check_out(args)
    from hadpo.evaluate.suite import run_chair
    from hadpo.inference import describe_images

    captions = args.captions
    if captions is None:
        if not args.model:
            raise ValueError("hadpo eval chair needs --captions, or --model to write them")
        captions = describe_images(
            args.model,
            args.images or args.annotations,
            Path(args.out) / f"captions_{args.mode}.jsonl",
            decoding(args),
            prompt=args.prompt,
            progress=not args.no_progress,
        )
    print_json(
        run_chair(
            captions,
            args.annotations,
            args.out,
            args.reference_captions,
            model=args.model or "",
            protocol=args.protocol,
            synonyms=args.synonyms,
            several_per_image=args.several_per_image,
        )
    )
    export(args)
    return 0


def _shr(args) -> int:
    check_out(args)
    judge = judge_config(args)  # a bad judge setting fails now, not after the model has described the images
    from hadpo.evaluate.shr import write_visual_genome_images
    from hadpo.evaluate.suite import run_shr
    from hadpo.inference import describe_images

    if args.vg_image_data and args.vg_regions:
        args.images = write_visual_genome_images(
            Path(args.out) / "shr_images.jsonl",
            args.vg_image_data,
            args.vg_regions,
            args.shr_factual,
            args.shr_images,
            image_root=args.vg_root,
        )
    if not args.images:
        raise ValueError("hadpo eval shr needs --images, or --vg-image-data with --vg-regions")
    descriptions = args.descriptions
    if descriptions is None:
        if not args.model:
            raise ValueError("hadpo eval shr needs --descriptions, or --model to write them")
        descriptions = describe_images(
            args.model,
            args.images,
            Path(args.out) / f"descriptions_{args.mode}.jsonl",
            decoding(args),
            prompt=args.prompt,
            progress=not args.no_progress,
        )
    metrics = run_shr(descriptions, args.images, judge, args.out, model=args.model or "", progress=not args.no_progress)
    print_json(metrics)
    return 0


def _mme(args) -> int:
    check_out(args)
    from hadpo.evaluate.suite import run_mme, score_mme_folder

    if args.results:
        scores = score_mme_folder(args.results, args.out, model=args.model or "", protocol=args.protocol)
    elif args.root and args.model:
        scores = run_mme(
            args.model, args.root, args.out, decoding(args), progress=not args.no_progress, protocol=args.protocol
        )
    else:
        raise ValueError("hadpo eval mme needs --results, or --root with --model")
    print_json(
        {k: v for k, v in scores.items() if k != "subtasks"}
        | {"subtasks": {name: round(s["score"], 2) for name, s in scores["subtasks"].items()}}
    )
    export(args)
    return 0
