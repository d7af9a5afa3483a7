"""`hadpo demo --rounds N` on a very small world: round 1 is the demo's HA-DPO run, later rounds describe with the
model the round before trained, and the report sets every round beside the base and the same-steps baseline.
(What the rounds do on the full world is measured by benchmarks/world/rounds_seeds.py, not asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_demo import SMALL

from hadpo.cli import main
from hadpo.records import Description, read_jsonl
from hadpo.world.demo import run_demo
from hadpo.world.rounds import load_demo_rounds_config, run_demo_rounds


@pytest.mark.slow
def test_demo_rounds_start_from_the_demo_and_report_every_round(tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    runs = tmp_path / "runs"
    demo = run_demo(config, seed=3, runs_dir=runs)
    results = run_demo_rounds(config, 3, runs, 2)
    out = runs / "demo" / "seed3-rounds"
    rows = results["rounds"]
    assert [row["round"] for row in rows] == [0, 1, 2] and results["baseline"] is not None
    # Round 0 is the demo's base and round 1 its HA-DPO run: same world, base, recipes and seed.
    assert rows[0]["eval"] == demo["models"]["base"]
    assert rows[1]["eval"] == demo["models"]["hadpo"]
    assert rows[1]["pairs"]["pairs"]["total"] == demo["pairs"]["total"]
    described = read_jsonl(out / "rounds" / "2" / "pairs" / "descriptions.jsonl", Description)
    assert {d.model for d in described} == {rows[1]["model"]} == {str(out / "rounds" / "1" / "train")}
    assert results["baseline"]["training"]["steps"] == sum(row["training"]["steps"] for row in rows[1:])
    report = (out / "report.md").read_text()
    assert "| metric | base | round 1 | round 2 | same-steps baseline | round 2 - baseline |" in report
    assert "| POPE adversarial accuracy (%) |" in report and "| held-out count accuracy (%) |" in report
    for name in ("rounds.md", "rounds.png", "pope_metrics.png", "coverage_heldout.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "rounds.json").read_text())["rounds"][2]["round"] == 2
    # The seeds' table reads the finished chain.
    root = Path(__file__).resolve().parents[2]  # the benchmarks run as modules of the checkout
    summarize = ["--seeds", "3", "--rounds", "2", "--runs-dir", str(runs), "--summarize"]
    printed = subprocess.run(
        [sys.executable, "-m", "benchmarks.world.rounds_seeds", *summarize],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| figure | seed 3: base / baseline / r1 / r2 | r2 - baseline: min .. max |" in printed
    assert "| 3 | " in printed and "round 2 (model 1)" in printed
    analysis = [sys.executable, "-m", "benchmarks.world.rounds_analysis", str(out)]
    printed = subprocess.run(analysis, cwd=root, capture_output=True, text=True, check=True).stdout
    kinds, qa = (
        [line.split(" | ") for line in table.splitlines() if line.startswith("| seed3-rounds |")]
        for table in printed.split("\n\n")
    )
    assert [int(cells[1]) for cells in kinds] == [int(cells[1]) for cells in qa] == [1, 2]
    assert [float(cells[3]) for cells in kinds] == [
        pytest.approx(100 * row["pairs"]["sentence_hallucination_rate"], abs=0.06) for row in rows[1:]
    ]
    assert [int(cells[2]) for cells in qa] == [row["pairs"]["pairs"]["qa"] for row in rows[1:]]


def test_demo_rounds_options_are_checked(tmp_path, capsys):
    demo = load_demo_rounds_config(None, 2, ["rounds.reference=base", "rounds.images_per_round=300"])
    assert (demo.rounds.reference, demo.rounds.images_per_round, demo.rounds.baseline) == ("base", 300, True)
    with pytest.raises(ValueError, match="did you mean 'fresh_images'"):
        load_demo_rounds_config(None, None, ["rounds.fresh_image=true"])
    assert main(["demo", "--rounds", "2", "--ablate", "--runs-dir", str(tmp_path)]) == 2
    assert "runs without --ablate" in capsys.readouterr().err
    assert main(["demo", "--rounds", "2", "--methods", "dense", "--runs-dir", str(tmp_path)]) == 2
    assert "or --methods (those train one-round variants)" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
