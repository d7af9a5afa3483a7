"""`hadpo` command line: one sub-command per stage. Each wing registers its verbs from its own module here;
library modules never import from `hadpo.cli`. Verbs from outside the toolkit (the scene world's `world` and
`demo`) are found through the `hadpo.cli` entry-point group, so the toolkit never imports them."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from hadpo.cli import eval, models, pairs, report, rounds, train
from hadpo.errors import RedactingFilter, RunFailed, one_line, os_error_line, redact
from hadpo.inference import parallel, serve_if_worker
from hadpo.progress import quiet_library_bars

WINGS = [pairs, train, eval, report, models, rounds]
ENTRY_POINTS = "hadpo.cli"  # each entry point names a `register(subparsers)` function


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hadpo", description="Hallucination-Aware DPO for vision-language models")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for wing in WINGS:
        wing.register(subparsers)
    for entry_point in entry_points(group=ENTRY_POINTS):
        entry_point.load()(subparsers)
    return parser


# Verbs whose model work is inference: under `accelerate launch` rank 0 runs them and the other ranks answer
# its questions (hadpo.inference.parallel); `train` uses every rank itself (DDP).
DATA_PARALLEL_INFERENCE = ("eval", "pairs")


def main(argv: list[str] | None = None) -> int:
    """Run one verb; every failure ends in one line on stderr and an exit code (hadpo.errors, docs/errors.md)."""
    try:
        quiet_library_bars()  # before the world's verbs import transformers with the parser
    except ValueError as error:  # a HADPO_PROGRESS that is not bars, lines or off
        return _fail(str(error), 2)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for name in ("httpx", "httpx2", "httpcore", "openai"):  # an INFO line per HTTP request buries the warnings
        logging.getLogger(name).setLevel(logging.NOTSET if args.verbose else logging.WARNING)
    code = 1
    try:
        if getattr(args, "command", None) in DATA_PARALLEL_INFERENCE:
            if serve_if_worker():
                code = 0
                return code
            try:
                code = _run(args)
                return code
            finally:
                parallel.release()
        code = _run(args)
        return code
    finally:
        _leave_process_group(synchronise=code == 0)


def _leave_process_group(synchronise: bool) -> None:
    """Under a distributed launch, leave the process group together before the interpreter exits. A rank that
    finished first (rank 0 still writing the model) and exited with its gloo group alive was aborted at exit
    now and then ("terminate called without an active exception", SIGABRT) after its work was done, and the
    launcher reported a failure. After a failure there is no barrier: the launcher stops the other ranks."""
    dist = sys.modules.get("torch.distributed")  # never import torch for a command that did not
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    if synchronise:
        dist.barrier()
    dist.destroy_process_group()


def _run(args) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return _fail("interrupted; rerun the same command to resume", 130)
    except RunFailed as error:
        return _fail(str(error), 1, args.verbose)
    except OSError as error:  # a path that cannot be read or written, before or during the run
        return _fail(os_error_line(error), 2, args.verbose)
    except ValueError as error:  # RecordError, ConfigError and every other refusal of bad input
        return _fail(str(error), 2, args.verbose)


def _fail(message: str, code: int, verbose: bool = False) -> int:
    if verbose:
        logging.getLogger("hadpo").debug("the error's traceback", exc_info=True)
    print(f"hadpo: error: {redact(one_line(message))}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
