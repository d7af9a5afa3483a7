"""What each round of a finished chain had left to learn, in two tables:

1. the hallucinated sentences of the descriptions the round sampled (with round r-1's model), by what the offline
   judge found wrong: an absent object named, a wrong position, a wrong colour or size, a wrong count (a sentence
   may have several);
2. how on-policy its QA pairs are: the model the round started from answers the round's QA questions (next-token
   yes/no, as POPE is answered); a QA pair the model already answers the chosen way teaches it to say the same
   thing more firmly, not to stop a mistake. (Description pairs are on-policy by construction: the rejected text
   is the model's own sampled description.)

    python -m benchmarks.world.rounds_analysis runs/demo/seed0-rounds [runs/demo/seed1-rounds ...]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from hadpo.inference import DecodingConfig, Query, load_model, run_queries
from hadpo.records import Answer, Judgement, PreferencePair, read_jsonl

KINDS = ("absent", "position", "attribute", "count")


def hallucination_kinds(row: dict) -> dict:
    """Shares of all judged sentences that are hallucinated, and that hold each kind of false claim (read from
    the offline judge's reasons: "no dog in the image", "dog position: ...", "dog attribute: ...", "dog count")."""
    sentences, hallucinated, kinds = 0, 0, Counter()
    for judgement in read_jsonl(Path(row["pairs"]["file"]).with_name("judgements.jsonl"), Judgement):
        if judgement.failed:
            continue
        for label, reason in zip(judgement.labels, judgement.reasons or [""] * len(judgement.labels)):
            sentences += 1
            if label != "hallucination":
                continue
            hallucinated += 1
            found = {m.group(1) for m in re.finditer(r"\S+ (position|attribute|count)", reason)}
            if re.search(r"\bno \S+ in the image", reason):
                found.add("absent")
            kinds.update(found)
    share = {kind: kinds[kind] / sentences for kind in KINDS}
    return {"round": row["round"], "sentences": sentences, "hallucinated": hallucinated / sentences, **share}


def qa_policy(chain: Path, row: dict) -> dict:
    """Round `row`'s QA pairs answered by the model it started from."""
    pairs = [p for p in read_jsonl(Path(row["pairs"]["file"]), PreferencePair) if p.kind == "qa"]
    out = chain / "analysis" / f"qa_answers_round{row['round']}.jsonl"
    queries = [Query(p.pair_id, Path(p.images[0]), p.prompt, image_id=p.image_id) for p in pairs]
    model, processor = load_model(row["described_by"])
    run_queries(model, processor, queries, out, DecodingConfig(mode="logits", batch_size=64), progress=False)
    answers = {a.question_id: a.text.strip().lower().startswith("yes") for a in read_jsonl(out, Answer)}
    right = Counter()
    for pair in pairs:
        chosen_yes = pair.chosen.strip().lower().startswith("yes")
        right[("yes" if chosen_yes else "no", answers[pair.pair_id] == chosen_yes)] += 1
    total = len(pairs)
    already = right[("yes", True)] + right[("no", True)]
    return {
        "round": row["round"],
        "qa_pairs": total,
        "chosen_no": right[("no", True)] + right[("no", False)],
        "already_right": already,
        "already_right_share": already / total if total else None,
        "wrong_no_questions": right[("no", False)],
        "wrong_yes_questions": right[("yes", False)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", nargs="+", type=Path, help="chain folders (holding rounds.json)")
    args = parser.parse_args()
    rows = {chain: json.loads((chain / "rounds.json").read_text())["rounds"][1:] for chain in args.chains}
    print("| chain | round | sentences judged | hallucinated (%) | " + " | ".join(f"{k} (%)" for k in KINDS) + " |")
    print("|---" * (4 + len(KINDS)) + "|")
    for chain, chain_rows in rows.items():
        for row in chain_rows:
            k = hallucination_kinds(row)
            shares = " | ".join(f"{100 * k[kind]:.1f}" for kind in KINDS)
            print(f"| {chain.name} | {k['round']} | {k['sentences']} | {100 * k['hallucinated']:.1f} | {shares} |")
    print()
    print(
        "| chain | round | QA pairs | chosen 'No.' | already answered the chosen way by the model it starts from "
        "| wrong: says yes to an absent object | wrong: says no to a present one |"
    )
    print("|---|---|---|---|---|---|---|")
    for chain, chain_rows in rows.items():
        for row in chain_rows:
            r = qa_policy(chain, row)
            print(
                f"| {chain.name} | {r['round']} | {r['qa_pairs']} | {r['chosen_no']} | {r['already_right']} "
                f"({100 * r['already_right_share']:.1f} %) | {r['wrong_no_questions']} | {r['wrong_yes_questions']} |"
            )


if __name__ == "__main__":
    main()
