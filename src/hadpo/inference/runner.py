"""The inference runner: `run_queries` answers every question not yet in an output file, on this process or,
under `accelerate launch`, spread over every rank (`hadpo.inference.parallel`: rank 0 sends each rank a slice,
each rank appends to its shard, rank 0 merges the shards in question order); `describe_images` is its
one-description-per-image use. The answering itself is `hadpo.inference.answering`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from hadpo.errors import RunFailed
from hadpo.inference import parallel
from hadpo.inference.answering import Query, RunSummary, answer_queries, answered_ids, load_model
from hadpo.inference.decoding import DecodingConfig
from hadpo.records import Answer, ImageRecord, iter_jsonl, read_jsonl, resolve_image_path, write_jsonl

log = logging.getLogger(__name__)

DESCRIBE_PROMPT = "Describe this image in detail."


def run_queries(
    model,
    processor,
    queries: Iterable[Query],
    output: str | Path,
    config: DecodingConfig | None = None,
    model_name: str = "",
    progress: bool = True,
    shard: bool = True,
) -> RunSummary:
    """Answer every query not yet in `output`, appending one `Answer` per query after each batch. Launched on
    several processes, rank 0's call spreads the questions over every rank (`hadpo.inference.parallel`);
    `shard=False` answers them here only."""
    config = config or DecodingConfig()
    output = Path(output)
    queries = list(queries)
    if shard:
        _merge_shards(output, queries, config, model_name)  # what an interrupted multi-process run answered
        if parallel.world_size() > 1 and parallel.rank() == 0:
            return _run_on_every_rank(model, processor, queries, output, config, model_name, progress)
    return answer_queries(model, processor, queries, output, config, model_name, progress)


def _run_on_every_rank(
    model, processor, queries: list[Query], output: Path, config: DecodingConfig, model_name: str, progress: bool
) -> RunSummary:
    """Rank 0 of a multi-process launch: send each rank a contiguous slice of the questions left (an image's
    questions on one rank), then merge the ranks' shards in question order."""
    path = str(getattr(model, "name_or_path", "") or "")
    if not path:
        log.warning("%s: a model built in memory cannot be loaded by the other processes; rank 0 answers alone", output)
        return answer_queries(model, processor, queries, output, config, model_name, progress)
    done = answered_ids(output, config.generation_settings(), model_name)
    todo = [q for q in queries if q.question_id not in done]
    slices = parallel.contiguous_slices(todo, parallel.world_size(), key=lambda query: query.image)
    job = parallel.Job(path, config.dtype, slices, str(output), config, model_name)
    statuses = parallel.dispatch(job, lambda job: _answer_slice(job, (model, processor), progress))
    written = _merge_shards(output, queries, config, model_name)
    failed = [f"rank {r}: {status['error']}" for r, status in enumerate(statuses) if status.get("error")]
    if failed:
        raise RunFailed(f"{output}: " + "; ".join(failed) + " (answers so far are kept; run again to resume)")
    skipped = [question_id for status in statuses for question_id in status["skipped"]]
    return RunSummary(written=written, resumed=len(queries) - len(todo), skipped=len(skipped), skipped_ids=skipped)


_WORKER_MODELS: dict[tuple, tuple] = {}  # (path, device, dtype) -> (model, processor) of a serving rank


def _answer_slice(job: parallel.Job, loaded=None, progress: bool = False) -> dict:
    """One rank's share of a job, appended to its shard; errors are reported to rank 0, not raised."""
    try:
        if loaded is None:
            key = (job.model_path, parallel.device_for_rank(job.config.device), job.dtype)
            if key not in _WORKER_MODELS:
                _WORKER_MODELS.clear()
                _WORKER_MODELS[key] = load_model(*key)
            loaded = _WORKER_MODELS[key]
        config = job.config.model_copy(update={"device": str(next(loaded[0].parameters()).device)})
        summary = answer_queries(
            *loaded,
            job.slices[parallel.rank()],
            parallel.shard_path(job.output, parallel.rank()),
            config,
            job.model_name,
            progress,
        )
        return {"skipped": summary.skipped_ids}
    except Exception as error:  # noqa: BLE001 - any failure is rank 0's to report
        return {"error": f"{type(error).__name__}: {error}", "skipped": []}


def _merge_shards(output: Path, queries: list[Query], config: DecodingConfig, model_name: str) -> int:
    """Append the answers in `output`'s shards that it lacks, in question order, and delete the shards."""
    shards = parallel.leftover_shards(output)
    if not shards:
        return 0
    settings = config.generation_settings()
    done = answered_ids(output, settings, model_name)
    found: dict[str, Answer] = {}
    for shard_file in shards:
        answered_ids(shard_file, settings, model_name)  # the same model and settings; a cut last line dropped
        for answer in iter_jsonl(shard_file, Answer):
            found.setdefault(answer.question_id, answer)
    order = {query.question_id: index for index, query in enumerate(queries)}
    new = sorted(
        (a for a in found.values() if a.question_id not in done),
        key=lambda answer: order.get(answer.question_id, len(order)),
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    written = write_jsonl(output, new, append=True) if new else 0
    for shard_file in shards:
        shard_file.unlink()
    return written


def serve_if_worker() -> bool:
    """In a multi-process launch, join the process group; ranks > 0 then answer rank 0's questions until its
    command ends, and return True (they have nothing else to do)."""
    if parallel.world_size() == 1:
        return False
    parallel.start()
    if parallel.rank() == 0:
        return False
    parallel.serve(_answer_slice)
    return True


def describe_images(
    model_path: str,
    images_file: str | Path,
    output: str | Path,
    config: DecodingConfig,
    prompt: str = DESCRIBE_PROMPT,
    progress: bool = True,
) -> Path:
    """One description per image of an images.jsonl (question_id = image_id), resumable."""
    if Path(images_file).suffix != ".jsonl":
        raise ValueError(f"{images_file}: describing images needs an images.jsonl of ImageRecords")
    records = read_jsonl(images_file, ImageRecord)
    queries = [Query(r.image_id, resolve_image_path(r, images_file), prompt, image_id=r.image_id) for r in records]
    model, processor = load_model(model_path, config.device, config.dtype)
    run_queries(model, processor, queries, output, config, model_name=str(model_path), progress=progress)
    return Path(output)
