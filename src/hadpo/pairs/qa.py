"""The `qa` stage: yes/no and short questions from the judged facts, with the right answer as chosen and the
hallucinated one as rejected.

HA-DPO (arXiv 2311.16839, section 3) adds ~10K QA pairs to its 6K + 6K description pairs: GPT-4 turns facts into
questions with a right and a wrong answer, and the VLM's own answers are sampled. Here the facts are:
  - every object a judgement found hallucinated: "Is there a dog in the image?" chosen "No, ...", rejected "Yes, ...";
  - (offline judge) every false attribute, count or position claim: "Is the star blue?", "How many stars are
    there?", "Where is the moon?", right answer from the annotations, wrong one from the claim;
  - as many present objects as "no" facts (balance, so that the pairs do not teach "always no"):
    "Is there a star in the image?" chosen "Yes, ...", rejected "No, ...".
With `sample_answers`, the target model answers every yes/no question (batched, through `hadpo.inference`);
when its answer takes the hallucinated side it becomes the rejected text (the model's own phrasing), and when it
is right it becomes the chosen text.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from lemminflect import getInflection

from hadpo.inference import DecodingConfig, Query, load_model, parse_answer, run_queries
from hadpo.judge.offline import AnnotationJudge
from hadpo.pairs.store import BuildFiles
from hadpo.records import Answer, Description, ImageRecord, Judgement, PreferencePair, iter_jsonl
from hadpo.text import article, number_word

QA_KINDS = ("existence", "attribute", "count", "position")


@dataclass
class QAFact:
    image_id: str
    question: str
    right: str
    wrong: str
    right_polarity: str | None  # "yes" / "no" for yes/no questions, None for short questions
    description_id: str
    judge: str
    kind: str = "existence"  # existence | attribute | count | position


def existence_fact(name: str, present: bool, description_id: str, judge: str, image_id: str) -> QAFact:
    yes = f"Yes, there is {article(name)} {name} in the image."
    no = f"No, there is no {name} in the image."
    question = f"Is there {article(name)} {name} in the image?"
    return QAFact(
        image_id,
        question,
        yes if present else no,
        no if present else yes,
        "yes" if present else "no",
        description_id,
        judge,
    )


def claim_facts(judge: AnnotationJudge, image: ImageRecord, judgement: Judgement, text: str) -> list[QAFact]:
    """Facts from the offline judge's false attribute / count / position claims."""
    facts = []
    for check in judge.check(image, text):
        for claim in check.claims:
            if claim.verdict is not False or not claim.actual:
                continue
            name, meta = claim.name, (judgement.description_id, judgement.judge, image.image_id)
            if claim.kind == "attribute":
                facts.append(
                    QAFact(
                        meta[2],
                        f"Is the {name} {claim.claimed}?",
                        f"No, the {name} is {claim.actual}.",
                        f"Yes, the {name} is {claim.claimed}.",
                        "no",
                        *meta[:2],
                        kind="attribute",
                    )
                )
            elif claim.kind == "count" and claim.actual.isdigit():
                actual = int(claim.actual)
                plural = (getInflection(name, "NNS") or (f"{name}s",))[0]
                right = f"There is one {name}." if actual == 1 else f"There are {number_word(actual)} {plural}."
                claimed = claim.claimed if claim.claimed != "several" else "several"
                claimed_word = number_word(int(claimed)) if claimed.isdigit() else claimed
                wrong = f"There is one {name}." if claimed_word == "one" else f"There are {claimed_word} {plural}."
                facts.append(
                    QAFact(
                        meta[2],
                        f"How many {plural} are there in the image?",
                        right,
                        wrong,
                        None,
                        *meta[:2],
                        kind="count",
                    )
                )
            elif claim.kind == "position":
                facts.append(
                    QAFact(
                        meta[2],
                        f"Where is the {name} in the image?",
                        f"It is in the {claim.actual}.",
                        f"It is in the {claim.claimed}.",
                        None,
                        *meta[:2],
                        kind="position",
                    )
                )
    return facts


def collect_facts(
    images: dict[str, ImageRecord],
    files: BuildFiles,
    judge,
    max_per_image: int,
    kinds: tuple[str, ...] | list[str] = QA_KINDS,
) -> list[QAFact]:
    """Facts of the wanted `kinds` from every usable judgement with a hallucination, at most `max_per_image` per
    image, questions unique per image; then, per image, as many "yes" existence facts about distinct present
    objects as it has "no" facts (at least one), as far as the image has objects."""
    descriptions = {d.description_id: d for d in iter_jsonl(files.descriptions, Description)}
    by_image: dict[str, list[QAFact]] = {}
    for judgement in iter_jsonl(files.judgements, Judgement):
        image = images.get(judgement.image_id)
        if image is None or judgement.failed or not judgement.has_hallucination:
            continue
        meta = (judgement.description_id, judgement.judge, image.image_id)
        facts = []
        if "existence" in kinds:
            facts += [existence_fact(name, False, *meta) for name in judgement.hallucinated_objects]
        if isinstance(judge, AnnotationJudge) and judgement.description_id in descriptions:
            claims = claim_facts(judge, image, judgement, descriptions[judgement.description_id].text)
            facts += [fact for fact in claims if fact.kind in kinds]
        kept = by_image.setdefault(image.image_id, [])
        for fact in facts:
            if len(kept) < max_per_image and fact.question not in {f.question for f in kept}:
                kept.append(fact)
    if "existence" in kinds:  # as many "yes" facts as "no" ones, about distinct present objects
        for image_id, kept in by_image.items():
            noes = sum(fact.right_polarity == "no" for fact in kept)
            present = shuffled_present(images[image_id])
            meta = (kept[0].description_id, kept[0].judge, image_id) if kept else ("", "annotations", image_id)
            kept += [existence_fact(name, True, *meta) for name in present[: max(1, noes)]]
    return [fact for facts in by_image.values() for fact in facts]


def shuffled_present(image: ImageRecord) -> list[str]:
    """The image's object names in an order seeded by its id: the "yes" questions that balance the "no" ones
    must cover every category (taking the first names alphabetically would ask some categories only "no"
    questions, and DPO would learn to deny them)."""
    names = sorted({o.name.lower() for o in image.objects})
    random.Random(image.image_id).shuffle(names)
    return names


def co_occurrence_facts(
    images: dict[str, ImageRecord], per_image: int, exhaustive: set[str] = frozenset()
) -> list[QAFact]:
    """POPE-style existence facts that need no description: for each completely annotated image, the
    `per_image` absent objects that co-occur most often with its present ones over the image set (POPE's
    adversarial sampling: the questions a co-occurrence-biased model answers "yes" to) and as many present
    objects. Only images whose annotations prove absence qualify (`complete`, or every name in `exhaustive`)."""
    together: Counter[tuple[str, str]] = Counter()
    for image in images.values():
        names = sorted({o.name.lower() for o in image.objects})
        together.update((a, b) for a in names for b in names if a != b)
    vocabulary = sorted({name for pair in together for name in pair})
    all_exhaustive = set(vocabulary) <= exhaustive
    facts = []
    for image in images.values():
        present = sorted({o.name.lower() for o in image.objects})
        if not present or not (image.complete or all_exhaustive):
            continue
        absent = [n for n in vocabulary if n not in present]
        absent.sort(key=lambda n: (-sum(together[(p, n)] for p in present), n))
        facts += [existence_fact(n, False, "", "annotations", image.image_id) for n in absent[:per_image]]
        facts += [
            existence_fact(n, True, "", "annotations", image.image_id) for n in shuffled_present(image)[:per_image]
        ]
    return facts


def pair_id(fact: QAFact) -> str:
    return f"qa:{fact.image_id}:{hashlib.sha1(fact.question.encode()).hexdigest()[:10]}"


class AnswerSampling(DecodingConfig):
    """`qa.sampling`: the target model answering the yes/no questions (DecodingConfig's keys, sampling)."""

    model: str = ""  # default: describe.model
    mode: Literal["generate"] = "generate"
    batch_size: int = 16
    max_new_tokens: int = 24
    do_sample: bool = True


def sample_answers(
    facts: list[QAFact],
    images: dict[str, ImageRecord],
    files: BuildFiles,
    sampling: AnswerSampling,
    model_and_processor=None,
) -> dict[str, Answer]:
    """The target model's answer to every yes/no question (resumable: qa_answers.jsonl by pair id)."""
    queries = [
        Query(question_id=pair_id(f), image=images[f.image_id].path, prompt=f.question, image_id=f.image_id)
        for f in facts
        if f.right_polarity
    ]
    if queries:
        model, processor = model_and_processor or load_model(sampling.model, sampling.device, sampling.dtype)
        run_queries(
            model, processor, queries, files.qa_answers, sampling.decoding(), model_name=sampling.model, progress=False
        )
    return {a.question_id: a for a in iter_jsonl(files.qa_answers, Answer)} if files.qa_answers.exists() else {}


def qa_pairs(
    facts: list[QAFact],
    images: dict[str, ImageRecord],
    answers: dict[str, Answer] | None = None,
    short_answers: dict[str, str] | None = None,
):
    """PreferencePairs of kind `qa`; returns (pairs, how many texts came from the model's own answers).
    `short_answers` ({"yes": ..., "no": ...}) replaces the sentences of yes/no questions."""
    pairs, own = [], 0
    for fact in facts:
        chosen, rejected = fact.right, fact.wrong
        if short_answers and fact.right_polarity:
            wrong = "no" if fact.right_polarity == "yes" else "yes"
            chosen, rejected = short_answers[fact.right_polarity], short_answers[wrong]
        answer = (answers or {}).get(pair_id(fact))
        if answer is not None and fact.right_polarity and answer.text.strip():
            if parse_answer(answer.text) == fact.right_polarity:
                chosen = answer.text.strip()
            else:
                rejected = answer.text.strip()
            own += 1
        pairs.append(
            PreferencePair(
                images=[images[fact.image_id].path],
                prompt=fact.question,
                chosen=chosen,
                rejected=rejected,
                kind="qa",
                image_id=fact.image_id,
                pair_id=pair_id(fact),
                source_description_id=fact.description_id,
                judge=fact.judge,
            )
        )
    return pairs, own
