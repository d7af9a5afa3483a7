"""`hadpo demo --rounds N`: the demo's HA-DPO as iterative on-policy rounds (`hadpo.rounds`) on the scene world.

The same world, base model, pairs recipe, training recipe (any method of the trainer: `train.KEY=VALUE`) and
evaluation suite as `hadpo demo`; round 1 is the demo's HA-DPO run, and each later round describes the pairs
split with the model the round before trained. The chain lives in runs/demo/seed<N>-rounds[-<name>]/
(rounds/<r>/, rounds.json, rounds.md, rounds.png; docs/rounds.md) and resumes where it stopped; report.md puts
the demo's table rows side by side for the base, every round and the same-steps baseline. The `rounds:` section
of the demo YAML (or `rounds.KEY=VALUE`) takes `hadpo.rounds`' options; the baseline is on by default here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from hadpo.config import merge
from hadpo.evaluate.report import plot_comparison
from hadpo.rounds.config import RoundsConfig, RoundsOptions
from hadpo.rounds.driver import run_rounds
from hadpo.world.demo import DemoConfig, demo_sft_file, load_demo_config
from hadpo.world.pretrain import pretrain_base
from hadpo.world.report import console, models_table, plot_coverage, print_models, suite_shape
from hadpo.world.scenes import build_world
from hadpo.world.suite import eval_sets, evaluate_model


class DemoRoundsOptions(RoundsOptions):
    baseline: bool = Field(True, description="the same-steps baseline: the comparison the demo's rounds are for")
    name: str = Field("", pattern=r"^[\w.-]*$", description="a variant's folder: runs/demo/seed<N>-rounds-<name>")


class DemoRoundsConfig(DemoConfig):
    """The demo YAML with a `rounds:` section (hadpo.rounds' options)."""

    rounds: DemoRoundsOptions = Field(default_factory=DemoRoundsOptions)


def load_demo_rounds_config(
    path: str | Path | None, seed: int | None = None, overrides: Sequence[str] = ()
) -> DemoRoundsConfig:
    return load_demo_config(path, seed, overrides, DemoRoundsConfig)


def run_demo_rounds(
    config_path: str | Path | None,
    seed: int | None,
    runs_dir: str | Path,
    rounds: int,
    overrides: Sequence[str] = (),
) -> dict:
    """The chain on the world (built and pretrained when not cached); returns rounds.json's content."""
    started = time.perf_counter()
    demo = load_demo_rounds_config(config_path, seed, overrides)
    world = demo.world
    name = f"-{demo.rounds.name}" if demo.rounds.name else ""
    out = Path(runs_dir) / "demo" / f"seed{world.seed}-rounds{name}"
    files = build_world(world, runs_dir)
    base_dir = pretrain_base(world, files, demo.pretrain, runs_dir)
    sets = eval_sets(files, world, demo.eval, out / "questions")
    sft_file = demo_sft_file(files, out, world.seed)
    own = {"name"} | ({"seed"} if "seed" not in demo.rounds.model_fields_set else set())  # default seed: the world's
    options = demo.rounds.model_dump(exclude=own)
    config = RoundsConfig(
        **{"seed": world.seed, **options},
        rounds=rounds,
        out_dir=str(out),
        model=str(base_dir),
        pairs_recipe=demo.pairs_recipe,
        train_recipe=demo.train_recipe,
        pairs=merge(
            demo.pairs,
            {"source": {"kind": "folder", "images": str(files.images("pairs"))}},
            {"judge": {"extra_names": list(world.categories)}},  # every category is exhaustively annotated
        ),
        train=merge(demo.train, {"sft_data": str(sft_file), "seed": world.seed}),
    )
    results = run_rounds(
        config,
        source=f"demo rounds ({config_path or 'defaults'})",
        evaluator=lambda model, folder: evaluate_model(model, folder, sets, demo.eval),
    )
    models = round_models(results)
    print_models(models)
    report = write_demo_rounds_report(out, world.seed, models, round(time.perf_counter() - started, 1))
    console.print(f"wrote {report}, {out / 'rounds.md'} and {out / 'rounds.json'}")
    return results


def round_models(results: dict) -> dict[str, dict]:
    """{column name: the model's summary}: base, round 1 .. N, and the baseline when it ran."""
    models = {("base" if row["round"] == 0 else f"round {row['round']}"): row["eval"] for row in results["rounds"]}
    if results.get("baseline"):
        models["same-steps baseline"] = results["baseline"]["eval"]
    return models


def write_demo_rounds_report(out: Path, seed: int, models: dict[str, dict], seconds: float) -> Path:
    plots = plot_comparison({name: suite_shape(model) for name, model in models.items()}, out)
    plots.append(plot_coverage(models, out))
    last = [name for name in models if name.startswith("round ")][-1]
    lines = [
        f"# HA-DPO in rounds on the scene world (seed {seed})",
        "",
        "Each round describes the pairs split with the model the round before trained (round 1: the base), builds "
        "the demo's pairs from those descriptions and trains the demo's recipe from that model. The same-steps "
        "baseline trains from the base on round 1's pairs for as many steps as all rounds together. Held-out eval "
        "split; fractions in percent.",
        "",
        models_table(models, (f"{last} - baseline", last, "same-steps baseline")),
        "",
        "Per round (pairs, the share of hallucinated sentences in the descriptions each round sampled, POPE per "
        "split, training): [rounds.md](rounds.md).",
        "",
        "![the headline metrics against the round](rounds.png)",
        *[f"![{path.stem}]({path.name})" for path in plots],
        "",
        f"This run: {seconds} s (the stages finished before a restart are not counted again).",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
