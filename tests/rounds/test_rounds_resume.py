"""A chain killed inside a pair build, inside a training and inside an evaluation, then started again with the
same config, continues from its last complete stage and ends with what an uninterrupted chain ends with: the
same pairs, the same weights, the same evaluation. The kill is an exception raised at the chosen point (what
a KeyboardInterrupt or a crash does to the process: nothing after it runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import hadpo.pairs.build
import hadpo.rounds.evaluation
import hadpo.train.run
from hadpo.rounds.driver import run_rounds
from hadpo.rounds.stages import DONE


class Killed(Exception):
    """Stands for the process going away at the chosen point."""


@pytest.fixture(scope="module")
def straight(load_chain):
    """The uninterrupted chain: (its folder, rounds.json)."""
    config = load_chain()
    return Path(config.out_dir), run_rounds(config)


def comparable(results: dict, out: Path) -> dict:
    """rounds.json without what differs between two runs of one chain: its folder and wall times."""
    text = json.dumps(results).replace(str(out), "<out>")

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("seconds", "train_runtime_s", "resumed_from")}
        return [strip(v) for v in node] if isinstance(node, list) else node

    return strip(json.loads(text))


def assert_same_chain(out: Path, results: dict, straight_out: Path, straight_results: dict) -> None:
    assert comparable(results, out) == comparable(straight_results, straight_out)
    for number in (1, 2):
        for name in ("descriptions.jsonl", "judgements.jsonl", "pairs.jsonl"):
            ours, theirs = (folder / "rounds" / str(number) / "pairs" / name for folder in (out, straight_out))
            assert ours.read_text().replace(str(out), "") == theirs.read_text().replace(str(straight_out), ""), name
        weights = [
            load_file(f / "rounds" / str(number) / "train" / "merged" / "model.safetensors")
            for f in (out, straight_out)
        ]
        assert weights[0].keys() == weights[1].keys()
        for key in weights[0]:
            torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=1e-6)


def markers(out: Path) -> dict[str, int]:
    """Every stage marker and when it was written: a rerun must not redo a complete stage."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob(DONE))}


def test_a_kill_inside_a_pair_build_resumes_to_the_same_chain(load_chain, straight, monkeypatch, tmp_path):
    original = hadpo.pairs.build.judge_descriptions

    class DyingJudge:
        """The build's judge, until its 3rd description."""

        def __init__(self, judge):
            self.inner, self.calls = judge, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def judge(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 3:
                raise Killed
            return self.inner.judge(*args, **kwargs)

    def judge_then_die(images, files, judge, *args, **kwargs):
        if "rounds/2" in str(files.root):  # round 2: its descriptions are written when the judge dies
            judge = DyingJudge(judge)
        return original(images, files, judge, *args, **kwargs)

    config = load_chain(f"out_dir={tmp_path / 'chain'}")
    monkeypatch.setattr(hadpo.pairs.build, "judge_descriptions", judge_then_die)
    with pytest.raises(Killed):
        run_rounds(config)
    out = tmp_path / "chain"
    assert (out / "rounds" / "2" / "pairs" / "descriptions.jsonl").is_file()
    assert not (out / "rounds" / "2" / "pairs" / DONE).exists()
    before = markers(out)
    monkeypatch.setattr(hadpo.pairs.build, "judge_descriptions", original)
    results = run_rounds(config)
    assert {k: v for k, v in markers(out).items() if k in before} == before  # round 1 was not redone
    assert_same_chain(out, results, *straight)


def test_a_kill_inside_a_training_resumes_from_its_checkpoint_to_the_same_chain(
    load_chain, straight, monkeypatch, tmp_path
):
    original = hadpo.train.run.run_training

    class DieAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3 and "rounds/1" in args.output_dir:
                raise Killed

    def training_with_a_kill(config, resume=False, callbacks=None, processor=None):
        return original(config, resume, [DieAtStep3()], processor)

    config = load_chain(f"out_dir={tmp_path / 'chain'}")
    monkeypatch.setattr(hadpo.train.run, "run_training", training_with_a_kill)
    with pytest.raises(Killed):
        run_rounds(config)
    train = tmp_path / "chain" / "rounds" / "1" / "train"
    assert (train / "checkpoint-2").is_dir() and not (train / DONE).exists()
    monkeypatch.setattr(hadpo.train.run, "run_training", original)
    results = run_rounds(config)
    assert results["rounds"][1]["training"]["resumed_from"] == str(train / "checkpoint-2")
    assert_same_chain(tmp_path / "chain", results, *straight)


def test_a_kill_inside_an_evaluation_resumes_from_its_answers_to_the_same_chain(
    load_chain, straight, monkeypatch, tmp_path
):
    original = hadpo.rounds.evaluation.run_chair

    def die_before_scoring(*args, **kwargs):  # POPE is answered and the descriptions written: then the kill
        raise Killed

    config = load_chain(f"out_dir={tmp_path / 'chain'}")
    monkeypatch.setattr(hadpo.rounds.evaluation, "run_chair", die_before_scoring)
    with pytest.raises(Killed):
        run_rounds(config)
    base_eval = tmp_path / "chain" / "rounds" / "0" / "eval"
    answered = {p.name: p.read_text() for p in base_eval.glob("answers_*.jsonl")}
    assert answered and (base_eval / "descriptions.jsonl").is_file() and not (base_eval / DONE).exists()
    monkeypatch.setattr(hadpo.rounds.evaluation, "run_chair", original)
    results = run_rounds(config)
    assert {p.name: p.read_text() for p in base_eval.glob("answers_*.jsonl")} == answered  # resumed, not redone
    assert_same_chain(tmp_path / "chain", results, *straight)


def test_a_complete_chain_is_not_run_again(load_chain, straight):
    out, results = straight
    before = markers(out)
    again = run_rounds(load_chain())
    assert markers(out) == before and comparable(again, out) == comparable(results, out)
