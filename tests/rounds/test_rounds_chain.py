"""`hadpo rounds` on a tiny LLaVA: each round describes with the model the round before trained, its outputs and
resolved configs stay in rounds/<r>/, the report has one row per round, the same-steps baseline is the fair
comparison, a chain grows by more rounds, and the images each round takes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hadpo.cli import main
from hadpo.records import Description, ImageRecord, read_jsonl, write_jsonl
from hadpo.rounds.config import RoundsConfig
from hadpo.rounds.driver import round_images, run_rounds
from hadpo.rounds.stages import DONE


def test_the_command_runs_a_chain_grows_it_and_keeps_the_baseline_fair(chain_files, tmp_path, capsys):
    config, _ = chain_files
    out = tmp_path / "chain"
    assert main(["rounds", "--config", str(config), f"out_dir={out}", "rounds=1", "baseline=true"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{out}/rounds.md"  # (the Trainer logs to stdout too)
    one = json.loads((out / "rounds.json").read_text())
    assert [row["round"] for row in one["rounds"]] == [0, 1]
    # One round's worth of steps on round 1's pairs from the base is round 1 again, to the last digit.
    first, baseline = one["rounds"][1], one["baseline"]
    assert baseline["training"]["steps"] == first["training"]["steps"] > 0
    assert baseline["eval"] == first["eval"]

    round_one = out / "rounds" / "1" / "train" / DONE
    written = round_one.stat().st_mtime_ns
    assert main(["rounds", "--config", str(config), f"out_dir={out}", "rounds=2", "baseline=true"]) == 0
    assert round_one.stat().st_mtime_ns == written  # round 1 complete: not run again
    two = json.loads((out / "rounds.json").read_text())
    rows = two["rounds"]
    assert [row["round"] for row in rows] == [0, 1, 2]
    merged = str(out / "rounds" / "1" / "train" / "merged")  # LoRA: the adapter merged, a plain model folder
    assert rows[1]["model"] == rows[2]["described_by"] == merged
    described = read_jsonl(out / "rounds" / "2" / "pairs" / "descriptions.jsonl", Description)
    assert {d.model for d in described} == {merged}
    resolved = yaml.safe_load((out / "rounds" / "2" / "round.yaml").read_text())
    assert resolved["train"]["model_name_or_path"] == merged and resolved["train"]["ref_model_name_or_path"] is None
    assert resolved["train"]["merge_adapter"] and resolved["pairs"]["describe"]["seed"] == 1
    # The baseline grew with the chain: as many steps as both rounds.
    steps = rows[1]["training"]["steps"] + rows[2]["training"]["steps"]
    assert two["baseline"]["training"]["steps"] == steps
    for row in [*rows, two["baseline"]]:
        assert set(row["eval"]["pope"]) == {"random", "popular", "adversarial"}
        assert set(row["eval"]["pope"]["adversarial"]) == {"accuracy", "precision", "recall", "f1", "yes_ratio"}
        assert {"chair", "shr", "coverage"} <= set(row["eval"]) and set(row["eval"]["heldout"]) == {"random"}
    for row in rows[1:]:
        assert row["pairs"]["pairs"]["total"] > 0 and 0 <= row["pairs"]["sentence_hallucination_rate"] <= 1
    report = (out / "rounds.md").read_text()
    assert (
        "| 0 (base) |" in report and "| 2 |" in report and f"| baseline ({steps} steps on round 1's pairs) |" in report
    )
    assert "## POPE per split" in report and "adversarial rec (%)" in report and "held-out random acc (%)" in report
    assert (out / "rounds.png").stat().st_size > 0


def test_reference_base_with_fresh_images_each_round(load_chain, tmp_path):
    config = load_chain(
        f"out_dir={tmp_path / 'chain'}",
        "reference=base",
        "train.reference=precomputed",
        "images_per_round=2",
        "fresh_images=true",
    )
    results = run_rounds(config)
    out = Path(config.out_dir)
    taken = [{r.image_id for r in read_jsonl(out / "rounds" / str(n) / "images.jsonl", ImageRecord)} for n in (1, 2)]
    assert len(taken[0]) == len(taken[1]) == 2 and not taken[0] & taken[1]
    base = results["rounds"][0]["model"]
    resolved = yaml.safe_load((out / "rounds" / "2" / "round.yaml").read_text())
    assert resolved["train"]["ref_model_name_or_path"] == base != resolved["train"]["model_name_or_path"]
    assert results["rounds"][2]["training"]["reference"] == base
    assert [row["pairs"]["images"] for row in results["rounds"][1:]] == [2, 2]


def test_rounds_take_the_same_images_or_fresh_ones_in_a_seeded_order(tmp_path):
    pool = tmp_path / "pool.jsonl"
    write_jsonl(pool, [ImageRecord(image_id=str(i), path=f"{i}.png", width=48, height=48) for i in range(10)])

    def taken(number: int, **options) -> list[str]:
        config = RoundsConfig(rounds=3, pairs_recipe="p.yaml", train_recipe="t.yaml", **options)
        path = round_images(pool, config, number, tmp_path / str(number))
        return [r.image_id for r in read_jsonl(path, ImageRecord)]

    assert round_images(pool, RoundsConfig(rounds=2, pairs_recipe="p", train_recipe="t"), 1, tmp_path) == pool
    same = [taken(n, images_per_round=3) for n in (1, 2, 3)]
    assert same[0] == same[1] == same[2] and len(same[0]) == 3
    fresh = [taken(n, images_per_round=3, fresh_images=True) for n in (1, 2, 3)]
    assert len({i for ids in fresh for i in ids}) == 9 and fresh[0] == same[0]
    assert taken(1, images_per_round=3, seed=1) != same[0]  # the order is the seed's
