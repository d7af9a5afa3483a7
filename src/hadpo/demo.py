"""`make demo`: the world, its base model, and a first measurement of what the base model sees and
hallucinates. (The full HA-DPO demo adds pairs, training and the evaluation suite on top of this.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from hadpo.records import ImageRecord, read_jsonl
from hadpo.world.config import WorldConfig, validated
from hadpo.world.pretrain import PretrainConfig, pretrain_base
from hadpo.world.probe import ProbeResult, probe
from hadpo.world.scenes import build_world

console = Console()


def load_demo_config(path: str | Path | None, seed: int | None = None) -> tuple[WorldConfig, PretrainConfig]:
    """World and pretraining configs from a YAML file with `world:` and `pretrain:` sections; unknown keys
    are errors. `seed` overrides both seeds."""
    data = yaml.safe_load(Path(path).read_text()) if path else {}
    data = data or {}
    unknown = set(data) - {"world", "pretrain"}
    if unknown:
        raise ValueError(f"{path}: unknown section {sorted(unknown)[0]!r} (expected world, pretrain)")
    world_data = dict(data.get("world") or {})
    pretrain_data = dict(data.get("pretrain") or {})
    if seed is not None:
        world_data["seed"] = pretrain_data["seed"] = seed
    source = str(path) if path else "demo config"
    return validated(WorldConfig, world_data, f"{source} (world)"), validated(
        PretrainConfig, pretrain_data, f"{source} (pretrain)"
    )


def print_probe(result: ProbeResult, world: WorldConfig) -> None:
    console.print(f"[bold]World bias knobs[/bold]: {json.dumps(world.knobs())}")
    for example in result.examples:
        console.print(f"[dim]{example['image_id']}[/dim]\n  truth: {example['truth']}\n  model: {example['model']}")
    table = Table(title="Base model on held-out eval scenes")
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("object recall of descriptions", f"{result.recall:.1%}")
    table.add_row("descriptions naming an absent object", f"{result.hallucinating:.1%}")
    for kind, metrics in result.existence.items():
        table.add_row(f"existence accuracy ({kind} negatives)", f"{metrics['accuracy']:.1%}")
        table.add_row(f"predicted yes-ratio ({kind} negatives)", f"{metrics['yes_ratio']:.1%}")
    console.print(table)


def run_demo(config_path: str | Path | None = None, seed: int | None = None, runs_dir: str | Path = "runs") -> dict:
    started = time.perf_counter()
    world, pretrain = load_demo_config(config_path, seed)
    console.print(f"[bold]1/3[/bold] world (seed {world.seed})")
    files = build_world(world, runs_dir)
    console.print(f"[bold]2/3[/bold] base model (reused if cached under {runs_dir}/base)")
    model_dir = pretrain_base(world, files, pretrain, runs_dir)
    console.print(f"[bold]3/3[/bold] probe of {model_dir}")
    eval_images = read_jsonl(files.images("eval"), ImageRecord)
    result = probe(model_dir, eval_images, files.images("eval"), world, world.seed)
    print_probe(result, world)
    summary = {
        "seed": world.seed,
        "world": world.knobs(),
        "base_model": str(model_dir),
        "probe": {"recall": result.recall, "hallucinating": result.hallucinating, **result.existence},
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(runs_dir) / "demo"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {out / 'results.json'} ({summary['seconds']} s)")
    return summary
