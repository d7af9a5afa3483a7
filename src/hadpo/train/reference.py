"""Precomputed reference log-probs (reference mode `precomputed`, issue 5).

The reference model scores every pair row once, before training; the sums and token counts of its chosen and
rejected log-probs are stored in a JSON file keyed by a hash of the example (templated prompt, templated
responses, image file contents) inside a file named by a fingerprint of the reference model, so they are
reused across epochs, rewrites and runs. Images are part of the key, so this works for VLM data (TRL refuses
precomputed reference log-probs for image data).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from accelerate.utils import send_to_device

from hadpo.files import write_json_atomic
from hadpo.records import PreferencePair
from hadpo.train.collate import PreferenceCollator
from hadpo.train.logps import LogpsFn, response_logps


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model: torch.nn.Module, name: str = "", gathered=None) -> str:
    """A cheap identity of a model: its name, config and a checksum of a slice of every parameter tensor.
    `gathered(param)`: a context in which a sharded parameter is whole (ZeRO-3's GatheredParameters)."""
    digest = hashlib.sha256(name.encode())
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            with gathered(param) if gathered else contextlib.nullcontext():
                digest.update(param_name.encode())
                digest.update(param.detach().flatten()[:4096].float().cpu().numpy().tobytes())
    return digest.hexdigest()


def example_key(pair: PreferencePair, collator: PreferenceCollator) -> str:
    """What a reference log-prob depends on: the templated texts, the image files and, when set, the token
    weights and the corrupted images (whose entries then hold the chosen answer after them too). With none of those
    options, keys are the same as before they existed, so a cache stays valid."""
    family, processor = collator.family, collator.processor
    payload = [
        family.prompt_text(processor, pair.prompt, len(pair.images)),
        family.response_text(processor, pair.chosen),
        family.response_text(processor, pair.rejected),
        [file_sha256(image) for image in pair.images],
    ]
    if pair.rejected_images:
        payload.append(["rejected images", [file_sha256(image) for image in pair.rejected_images]])
    if collator.token_weighting != "none":
        payload.append(["token weights", collator.token_weighting, collator.token_weight])
        if collator.token_weighting == "labels":
            payload.append([pair.chosen_spans, pair.rejected_spans])
    if collator.corruption is not None:
        payload.append(["corrupted", collator.corruption.describe(), pair.pair_id])
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def precompute_reference(
    model: torch.nn.Module,
    pairs: Sequence[PreferencePair],
    collator: PreferenceCollator,
    cache_dir: str | Path,
    *,
    fingerprint: str,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    logps_fn: LogpsFn = response_logps,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
) -> dict[str, tuple[float, float, float, float]]:
    """pair_id -> (chosen sum, chosen tokens, rejected sum, rejected tokens[, corrupted-image chosen sum, tokens]),
    computing what the cache lacks (sums and token counts weighted where the collator weighs tokens).

    With several processes every rank scores its share of the missing examples (`rank::world_size`) and writes
    a shard; after `barrier` rank 0 merges the shards into the cache, and after a second barrier all read it.
    Every rank must call this (it is a collective whenever something is missing)."""
    path = Path(cache_dir) / f"reference_logps-{fingerprint[:16]}.json"
    entries = _read(path, fingerprint)
    keys = {pair.pair_id: example_key(pair, collator) for pair in pairs}
    missing = list({keys[pair.pair_id]: pair for pair in pairs if keys[pair.pair_id] not in entries}.values())
    if not missing:
        return {pair.pair_id: tuple(entries[keys[pair.pair_id]]) for pair in pairs}
    share = missing[rank::world_size]
    # Every rank scores as many examples (a short share repeats the first ones): under FSDP / ZeRO-3 each forward
    # is a collective, so a rank with one batch fewer would leave the others waiting (issue 21).
    share += missing[: -(-len(missing) // world_size) - len(share)]
    scored = _score(model, share, keys, collator, batch_size, device, autocast_dtype, logps_fn)
    if world_size == 1:
        _write(path, fingerprint, {**entries, **scored})
    else:
        _write(path.with_suffix(f".rank{rank}.json"), fingerprint, scored)
        barrier()
        if rank == 0:
            for shard in range(world_size):
                shard_path = path.with_suffix(f".rank{shard}.json")
                entries.update(_read(shard_path, fingerprint))
                shard_path.unlink()
            _write(path, fingerprint, entries)
        barrier()
    entries = _read(path, fingerprint)
    return {pair.pair_id: tuple(entries[keys[pair.pair_id]]) for pair in pairs}


def _score(model, pairs, keys, collator, batch_size, device, autocast_dtype, logps_fn) -> dict[str, list[float]]:
    was_training = model.training
    model.eval()
    autocast = (
        torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    )
    scored: dict[str, list[float]] = {}
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = send_to_device(collator([{"pair": pair} for pair in chunk]), device)  # nested batches too
        with torch.no_grad(), autocast:
            parts = [logps_fn(model, batch).preference_parts()]
            if "corrupted" in batch:
                parts.append(logps_fn(model, batch["corrupted"]).preference_parts())
        sums = torch.cat([s for s, _ in parts]).double().cpu().tolist()
        counts = torch.cat([c for _, c in parts]).double().cpu().tolist()
        n = len(chunk)
        for i, pair in enumerate(chunk):
            # chosen, rejected[, chosen after the corrupted image]: (sum, tokens) each
            scored[keys[pair.pair_id]] = [value for j in range(i, len(sums), n) for value in (sums[j], counts[j])]
    model.train(was_training)
    return scored


def _read(path: Path, fingerprint: str) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text(encoding="utf-8"))
    return stored["entries"] if stored.get("model") == fingerprint else {}


def _write(path: Path, fingerprint: str, entries: dict[str, list[float]]) -> None:
    write_json_atomic(path, {"model": fingerprint, "entries": entries}, indent=None)
