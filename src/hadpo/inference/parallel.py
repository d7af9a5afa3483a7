"""Data-parallel inference (issue 13): `accelerate launch --num_processes N $(which hadpo) eval ...` (or
`pairs describe`) answers a run's questions on N processes, one model each.

Rank 0 runs the command; the other ranks only serve the runner (`serve`): each `run_queries` call on rank 0 sends
every rank a contiguous slice of the questions still to answer (`Job`), each rank appends its answers to its own
shard file beside the output (`<output>.rank<r>`, batch by batch, so a killed run resumes per rank), and rank 0
then merges the shards into the output in question order. A run resumed with any number of processes first
merges the shards an interrupted run left behind. Workers load the model from the path the rank-0 model was
loaded from; a model built in memory is answered by rank 0 alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

STOP = "stop"
# Serving ranks wait for rank 0's next job as long as its command runs: a pairs build can judge descriptions
# with an LLM for hours between two model stages.
WAIT = timedelta(days=3)
_group = None  # the gloo process group that carries jobs (set up once per process)
# torch.distributed and accelerate are imported in the functions below: only a multi-process launch calls them.


@dataclass
class Job:
    """What every rank needs for one `run_queries` call: where the model comes from, its slice per rank, the
    decoding settings and the output file (shards are named after it)."""

    model_path: str
    dtype: str
    slices: list  # list[list[Query]], one per rank
    output: str
    config: object  # DecodingConfig
    model_name: str


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def shard_path(output: str | Path, shard: int) -> Path:
    output = Path(output)
    return output.with_name(f"{output.name}.rank{shard}")


def leftover_shards(output: str | Path) -> list[Path]:
    output = Path(output)
    return sorted(output.parent.glob(f"{output.name}.rank*"))


def device_for_rank(device: str) -> str:
    """`cuda` means this process's own GPU (LOCAL_RANK) when several processes share a machine."""
    if device == "cuda" and world_size() > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def contiguous_slices(items: list, parts: int, key: Callable | None = None) -> list[list]:
    """`items` cut into `parts` contiguous slices of nearly equal size; with `key`, a cut moves forward to the
    next change of key where it can (an image's questions stay on one rank and share its encoding)."""
    bounds = [0]
    for part in range(1, parts):
        cut = max(bounds[-1], round(part * len(items) / parts))
        while key is not None and 0 < cut < len(items) and key(items[cut]) == key(items[cut - 1]):
            cut += 1
        bounds.append(min(cut, len(items)))
    bounds.append(len(items))
    return [items[start:end] for start, end in zip(bounds, bounds[1:])]


def start() -> None:
    """Join the launch's process group (every rank, once): jobs travel on a gloo group, whatever the device."""
    global _group
    if _group is None and world_size() > 1:
        import torch.distributed as dist
        from accelerate import PartialState

        PartialState(timeout=WAIT)
        _group = dist.new_group(backend="gloo", timeout=WAIT)


def dispatch(job: Job, answer_own_slice: Callable[[Job], dict]) -> list[dict]:
    """Rank 0: send `job` to every rank, answer slice 0, and collect each rank's status."""
    import torch.distributed as dist

    start()
    dist.broadcast_object_list([job], src=0, group=_group)
    statuses: list = [None] * world_size()
    dist.all_gather_object(statuses, answer_own_slice(job), group=_group)
    return statuses


def serve(answer_slice: Callable[[Job], dict]) -> None:
    """Ranks > 0: answer every job rank 0 sends until it sends STOP."""
    import torch.distributed as dist

    start()
    while True:
        message: list = [None]
        dist.broadcast_object_list(message, src=0, group=_group)
        if message[0] == STOP:
            return
        statuses: list = [None] * world_size()
        dist.all_gather_object(statuses, answer_slice(message[0]), group=_group)


def release() -> None:
    """Rank 0, when its command ends (or fails): let the serving ranks exit."""
    if world_size() > 1 and rank() == 0:
        import torch.distributed as dist

        start()
        dist.broadcast_object_list([STOP], src=0, group=_group)
