"""hadpo.progress: bars on a terminal, plain lines (one per ~10 % and one at the end) in a file, a pipe or CI; the
Trainer's progress as the same lines; the libraries' loading bars off away from a terminal."""

from __future__ import annotations

import io
import re

import pytest

from hadpo import progress
from hadpo.progress import PlainProgress, fit_trainer_progress, mode, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_choice(monkeypatch):
    monkeypatch.delenv("HADPO_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)


def test_the_mode_follows_the_stream_ci_and_the_variable(no_choice, monkeypatch):
    monkeypatch.setattr("sys.stderr", Terminal())
    assert mode() == "bars"
    monkeypatch.setenv("CI", "true")
    assert mode() == "lines"
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a file or a pipe
    assert mode() == "lines"
    monkeypatch.setenv("HADPO_PROGRESS", "off")
    assert mode() == "off"
    monkeypatch.setenv("HADPO_PROGRESS", "quiet")
    with pytest.raises(ValueError, match=r"\$HADPO_PROGRESS='quiet': expected one of bars, lines, off"):
        mode()


def _lines(run) -> list[str]:
    stream = io.StringIO()
    run(stream)
    return stream.getvalue().splitlines()


def test_plain_lines_every_tenth_and_at_the_end():
    def loop(stream):
        bar = PlainProgress(range(250), desc="base: web stage", stream=stream, min_seconds=0)
        for step in bar:
            bar.set_postfix(loss=f"{1 / (step + 1):.3f}")

    lines = _lines(loop)
    assert len(lines) == 10  # 10 % ... 90 %, and done
    assert re.fullmatch(r"base: web stage: 25/250 \(10 %\), \d+ s, loss 0\.040", lines[0])
    assert re.fullmatch(r"base: web stage: 225/250 \(90 %\), \d+ s, loss 0\.004", lines[8])
    assert re.fullmatch(r"base: web stage: done, 250 in \d+ s, loss 0\.004", lines[9])


def test_a_loop_left_early_says_how_far_it_got_and_small_loops_stay_short():
    def early(stream):
        for step in PlainProgress(range(100), desc="hard", stream=stream, min_seconds=0):
            if step == 40:
                break

    assert _lines(early)[-1].startswith("hard: done, 40/100 in ")
    assert len(_lines(lambda s: list(PlainProgress(range(3), desc="x", stream=s, min_seconds=0)))) == 3
    # A loop faster than MIN_SECONDS between lines writes its end only.
    assert len(_lines(lambda s: list(PlainProgress(range(1000), desc="fast", stream=s)))) == 1
    assert _lines(lambda s: PlainProgress(total=0, desc="nothing", stream=s).close()) == []
    with_updates = _lines(lambda s: [bar.update(7) for bar in [PlainProgress(total=None, desc="u", stream=s)]])
    assert with_updates == []  # no total, not closed: nothing yet
    unknown = PlainProgress(iter(range(5)), desc="judge", stream=io.StringIO())
    list(unknown)
    assert unknown.stream.getvalue().startswith("judge: done, 5 in ")


def test_progress_bar_chooses_by_mode(no_choice, monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress_bar(range(3), desc="d"), PlainProgress)
    monkeypatch.setenv("HADPO_PROGRESS", "bars")
    assert not isinstance(progress_bar(range(3), desc="d"), PlainProgress)
    for setting in ("off", "lines"):
        monkeypatch.setenv("HADPO_PROGRESS", setting)
        silent = io.StringIO()
        monkeypatch.setattr("sys.stderr", silent)
        assert list(progress_bar(range(3), desc="d", disable=setting == "lines")) == [0, 1, 2]
        assert silent.getvalue() == ""


def test_the_command_line_refuses_an_unknown_progress_mode(monkeypatch, capsys):
    from hadpo.cli import main

    monkeypatch.setenv("HADPO_PROGRESS", "loud")
    assert main(["report", "a.json", "b.json"]) == 2
    assert capsys.readouterr().err == "hadpo: error: $HADPO_PROGRESS='loud': expected one of bars, lines, off\n"


def test_library_bars_are_off_away_from_a_terminal(no_choice, monkeypatch):
    import transformers

    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    try:
        progress.quiet_library_bars()
        assert not transformers.utils.logging.is_progress_bar_enabled()
    finally:
        transformers.utils.logging.enable_progress_bar()


def test_the_trainer_writes_plain_lines_in_place_of_its_bar(tiny_model_dir, pairs_file, tmp_path, capfd, monkeypatch):
    """A real training run (the tiny LLaVA, 10 steps) with fit_trainer_progress: a line per 10 % with the latest
    logged loss, one at the end, and none of the Trainer's carriage-return redraws or logged dicts."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from hadpo.config import load_config
    from hadpo.train.config import HADPOConfig
    from hadpo.train.run import build_trainer

    monkeypatch.setenv("HADPO_PROGRESS", "lines")
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)  # a line per step of 10 %, however fast the steps
    values = {
        "model_name_or_path": str(tiny_model_dir),
        "pairs": str(pairs_file),
        "output_dir": str(tmp_path / "run"),
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "per_device_train_batch_size": 2,
        "lora_r": 4,
        "max_steps": 10,
        "logging_steps": 1,
    }
    trainer = build_trainer(load_config(HADPOConfig, None, values))  # which calls fit_trainer_progress
    fit_trainer_progress(trainer)  # a second call changes nothing
    kinds = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert "PlainTrainerProgress" in kinds and not {ProgressCallback.__name__, PrinterCallback.__name__} & set(kinds)
    capfd.readouterr()
    trainer.train()
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("train: ")]
    assert [line.split(",")[0] for line in lines] == [f"train: {n}/10 ({10 * n} %)" for n in range(1, 10)] + [
        "train: done"
    ]
    assert all(re.search(r"loss \d", line) for line in lines)
    assert "\r" not in err and "{'loss'" not in err
