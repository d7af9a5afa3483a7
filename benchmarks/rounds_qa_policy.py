"""How on-policy each round's pairs are: for every round of a finished chain, the model that round started from
(round r-1's) answers the round's QA questions (next-token yes/no, as POPE is answered), and the table shows how
many of them it already answers the chosen way: a QA pair the model already gets right teaches it to say the
same thing more firmly, not to stop a mistake. Description pairs are on-policy by construction (the rejected text
is the model's own sampled description).

    python benchmarks/rounds_qa_policy.py runs/demo/seed0-rounds [runs/demo/seed1-rounds ...]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from hadpo.inference import DecodingConfig, Query, load_model, run_queries
from hadpo.records import Answer, PreferencePair, read_jsonl


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
    print(
        "| chain | round | QA pairs | chosen 'No.' | already answered the chosen way by the model it starts from "
        "| wrong: says yes to an absent object | wrong: says no to a present one |"
    )
    print("|---|---|---|---|---|---|---|")
    for chain in args.chains:
        rows = json.loads((chain / "rounds.json").read_text())["rounds"][1:]
        for row in rows:
            r = qa_policy(chain, row)
            print(
                f"| {chain.name} | {r['round']} | {r['qa_pairs']} | {r['chosen_no']} | {r['already_right']} "
                f"({100 * r['already_right_share']:.1f} %) | {r['wrong_no_questions']} | {r['wrong_yes_questions']} |"
            )


if __name__ == "__main__":
    main()
