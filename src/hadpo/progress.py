"""Progress that fits where it goes (issue 22): a live tqdm bar on a terminal or in a notebook; where stderr is a
file, a pipe or CI, a few plain lines instead (one per ~10 % of a loop, at most one per 5 s, and one when it
ends), so that a log read later holds what ran and how long it took, not thousands of carriage-return redraws.

- `progress_bar(...)`: every loop of hadpo and the world that shows progress goes through it;
- `quiet_library_bars()`: away from a terminal, turns off the bars transformers and the hub draw while loading
  and saving models ("Loading weights"); `hadpo`'s command line calls it first;
- `fit_trainer_progress(trainer)`: away from a terminal, the Trainer's bar and its logged dicts give way to the
  lines of `PlainTrainerProgress`, a `transformers.TrainerCallback`.

`HADPO_PROGRESS=bars|lines|off` overrides what stderr suggests (CI=... chooses lines).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

MODE_VARIABLE = "HADPO_PROGRESS"
MODES = ("bars", "lines", "off")
STEPS = 10  # plain lines per loop at most (one per 10 %), besides the closing one
MIN_SECONDS = 5.0  # and none sooner than this after the previous one: a loop of a few seconds writes its end only
SHOWN_METRICS = ("loss", "loss/dpo", "loss/sft", "rewards/accuracies", "rewards/margins", "eval_loss")


def mode() -> str:
    """How progress is shown now: HADPO_PROGRESS if set; else "lines" under CI or when stderr is not a terminal
    (a file, a pipe), "bars" on a terminal or in a notebook."""
    chosen = os.environ.get(MODE_VARIABLE, "").strip().lower()
    if chosen:
        if chosen not in MODES:
            raise ValueError(f"${MODE_VARIABLE}={chosen!r}: expected one of {', '.join(MODES)}")
        return chosen
    if os.environ.get("CI"):
        return "lines"
    isatty = getattr(sys.stderr, "isatty", None)
    return "bars" if _in_notebook() or (isatty is not None and isatty()) else "lines"


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(
    iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", disable: bool = False, leave=True
):
    """A progress bar with tqdm's interface (iterate it, or `update(n)`, `set_postfix(...)`, `close()`): tqdm's
    own on a terminal, `PlainProgress` lines elsewhere, nothing when `disable` or HADPO_PROGRESS=off."""
    chosen = mode()
    if disable or chosen == "off":
        return tqdm(iterable, total=total, disable=True)
    if chosen == "bars":
        return tqdm(iterable, total=total, desc=desc, leave=leave)
    return PlainProgress(iterable, total=total, desc=desc)


class PlainProgress:
    """A loop's progress as plain lines on stderr: "DESC: 140/1400 (10 %), 12 s, loss 0.412" at a tenth of `total`
    (at most one per `min_seconds`) and "DESC: done, 1400 in 120 s, loss 0.312" at the end (a loop left early says
    how far it got). A loop without a known total writes the last line only."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str = "",
        stream=None,
        min_seconds: float | None = None,
    ):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.stream = total, desc, stream
        self.n, self.shown, self.postfix, self.closed = 0, 0, "", False
        self.min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
        self.started = self.written = time.perf_counter()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:  # also when the loop is left early: the generator is closed as the loop lets go of it
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self.n < self.total:
            step = self.n * STEPS // self.total
            if step > self.shown and time.perf_counter() - self.written >= self.min_seconds:
                self.shown = step
                self._write(f"{self.n}/{self.total} ({100 * self.n // self.total} %)")

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{key} {value}" for key, value in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n or self.total:
            reached = str(self.n) if self.total is None or self.n >= self.total else f"{self.n}/{self.total}"
            self._write(f"done, {reached}", final=True)

    def _write(self, where: str, final: bool = False) -> None:
        self.written = time.perf_counter()
        seconds = self.written - self.started
        timing = f" in {seconds:.0f} s" if final else f", {seconds:.0f} s"
        line = f"{self.desc}: {where}{timing}" + (f", {self.postfix}" if self.postfix else "")
        print(line, file=self.stream or sys.stderr, flush=True)


def quiet_library_bars() -> None:
    """Away from a terminal, no bars from transformers and huggingface_hub (one per model load and save): the hub's
    variable is read when it is first imported, the libraries already imported are told directly."""
    if mode() == "bars":
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


class _PlainTrainerEvents:
    """PlainTrainerProgress's events: a line per ~10 % of the run's steps with the latest logged loss and reward
    accuracy, a line per evaluation, and one at the end (rank 0 only). A step is counted once its logs are in
    (the Trainer logs a step after its `on_step_end`), so that its line shows its own loss."""

    bar: PlainProgress | None = None
    finished_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = PlainProgress(total=state.max_steps, desc="train")
            self.bar.n = state.global_step  # a resumed run counts from its checkpoint
            self.bar.shown = state.global_step * STEPS // max(1, state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        self.finished_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs:
            shown = {k: f"{logs[k]:.4g}" for k in SHOWN_METRICS if isinstance(logs.get(k), int | float)}
            if shown:
                self.bar.set_postfix(**shown)
        self._count_finished_step()

    def on_step_begin(self, args, state, control, **kwargs):
        self._count_finished_step()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.bar is not None and metrics:
            values = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, int | float))
            print(f"train: evaluation at step {state.global_step}: {values}", file=sys.stderr, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        self._count_finished_step()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _count_finished_step(self) -> None:
        if self.bar is not None and self.finished_step is not None:
            self.bar.update(self.finished_step - self.bar.n)
        self.finished_step = None


_TRAINER_CALLBACK = None


def __getattr__(name: str):
    # PEP 562: PlainTrainerProgress is built on first use, because its base class, transformers.TrainerCallback,
    # costs seconds of imports (transformers.trainer_callback loads PEFT) that inference and the world never need.
    global _TRAINER_CALLBACK
    if name != "PlainTrainerProgress":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _TRAINER_CALLBACK is None:
        from transformers import TrainerCallback

        _TRAINER_CALLBACK = type(
            "PlainTrainerProgress",
            (_PlainTrainerEvents, TrainerCallback),
            {"__doc__": "A TrainerCallback writing the run's progress as plain lines (see _PlainTrainerEvents)."},
        )
    return _TRAINER_CALLBACK


def fit_trainer_progress(trainer) -> None:
    """Away from a terminal, replace the Trainer's bar (and the dict it writes per log) with PlainTrainerProgress's
    lines; HADPO_PROGRESS=off removes both. On a terminal the Trainer keeps its own bar."""
    chosen = mode()
    if chosen == "bars":
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback  # loaded with the Trainer already

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    plain = __getattr__("PlainTrainerProgress")
    trainer.remove_callback(plain)  # once, however often it is called (hadpo.train's build_trainer calls it)
    if chosen == "lines":
        trainer.add_callback(plain)
