"""Which training engine a run asked for, whether this machine gives it that engine, and what hadpo sets for it.

`accelerate launch --config_file configs/accelerate/X.yaml` (or `torchrun` with TrainingArguments' `fsdp` /
`deepspeed` keys) asks for an engine: plain DDP, FSDP2, or DeepSpeed ZeRO-2/3. accelerate applies FSDP and
DeepSpeed only on accelerator devices (CUDA, XPU, NPU, ...): on a machine without one it silently trains
unsharded, and with `use_cpu: false` each launched process even trains alone, all writing the same output_dir
(issue 21). `check_engine` compares what was asked with what accelerate set up, before any model is loaded, and
stops with one line (exit 2) when they differ.

On CPUs, `HADPO_CPU_SHARDING=1` makes a `use_cpu: true` launch (gloo) apply FSDP2 or DeepSpeed as asked, through
accelerate's own code (`cpu_sharding`): it is how the tests run hadpo's sharded paths without a GPU, and a way to
debug a sharded run on a laptop. It is not a way to train fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

log = logging.getLogger(__name__)

CPU_SHARDING_ENV = "HADPO_CPU_SHARDING"
SHARDED_TYPES = (DistributedType.FSDP, DistributedType.DEEPSPEED)


@dataclass(frozen=True)
class Engine:
    """kind: 'single' (one process), 'ddp', 'fsdp' or 'deepspeed'; processes: how many were launched."""

    kind: str
    processes: int = 1
    fsdp_version: int | None = None
    zero_stage: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "fsdp":
            return f"FSDP{self.fsdp_version}"
        if self.kind == "deepspeed":
            return f"DeepSpeed ZeRO-{self.zero_stage}"
        return {"single": "one process", "ddp": "DDP"}[self.kind]

    @property
    def shards_parameters(self) -> bool:
        """Parameters live in shards: every forward is a collective, and a whole model exists nowhere."""
        return self.kind == "fsdp" or (self.kind == "deepspeed" and (self.zero_stage or 0) >= 3)


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "false").strip().lower() in ("1", "true", "yes")


def _zero_stage(config, environ: Mapping[str, str]) -> int:
    if environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        return int(environ["ACCELERATE_DEEPSPEED_ZERO_STAGE"])
    source = config.deepspeed or environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if isinstance(source, (str, Path)) and Path(source).is_file():
        source = json.loads(Path(source).read_text(encoding="utf-8"))
    stage = source.get("zero_optimization", {}).get("stage", 0) if isinstance(source, dict) else 0
    return int(stage)


def requested_engine(config, environ: Mapping[str, str] | None = None) -> Engine:
    """The engine the launch asked for: accelerate's launcher environment, else the config's own `fsdp` /
    `deepspeed` keys; the process count is the launcher's WORLD_SIZE."""
    environ = os.environ if environ is None else environ
    processes = int(environ.get("WORLD_SIZE", "1") or 1)
    if _flag(environ, "ACCELERATE_USE_DEEPSPEED") or config.deepspeed:
        return Engine("deepspeed", processes, zero_stage=_zero_stage(config, environ))
    if _flag(environ, "ACCELERATE_USE_FSDP") or config.fsdp:
        version = environ.get("FSDP_VERSION") or (config.fsdp_config or {}).get("version", 1)
        return Engine("fsdp", processes, fsdp_version=int(version))
    return Engine("ddp" if processes > 1 else "single", processes)


def cpu_sharding_enabled(environ: Mapping[str, str] | None = None) -> bool:
    return _flag(os.environ if environ is None else environ, CPU_SHARDING_ENV)


def engine_problem(engine: Engine, state: PartialState, environ: Mapping[str, str] | None = None) -> str | None:
    """Why `engine` will not be what trains under accelerate's `state`, or None. Decided before any model loads."""
    if engine.kind == "fsdp" and engine.fsdp_version != 2:
        return f"FSDP{engine.fsdp_version} is not supported: set fsdp_version: 2 (configs/accelerate/fsdp2.yaml)"
    if state.num_processes != engine.processes:
        return (
            f"{engine.processes} processes were launched for {engine.label}, but accelerate set up "
            f"{state.num_processes} run(s) of {state.num_processes} process(es) each ({_no_devices(state)}); each "
            "would train alone and write the same output_dir"
        )
    if engine.kind in ("fsdp", "deepspeed") and state.distributed_type not in SHARDED_TYPES:
        cpu = state.device.type == "cpu"
        if not (cpu and cpu_sharding_enabled(environ) and state.distributed_type == DistributedType.MULTI_CPU):
            return (
                f"{engine.label} was asked for, but accelerate would train with {_running_label(state)} "
                f"({_no_devices(state) if cpu else 'it applies that engine to accelerator devices only'})"
            )
    return None


def _running_label(state: PartialState) -> str:
    if state.distributed_type == DistributedType.NO:
        return "one process, unsharded"
    return f"{state.distributed_type.value} (unsharded)"


def _no_devices(state: PartialState) -> str:
    if state.device.type != "cpu":
        return f"device {state.device}"
    return (
        "FSDP and DeepSpeed need GPUs and this process has none: on CPUs launch configs/accelerate/ddp_cpu.yaml "
        f"for data parallelism, or set {CPU_SHARDING_ENV}=1 with it to test sharding"
    )


def check_engine(config) -> Engine:
    """The engine this run asked for, after checking that accelerate will give it; a ValueError (exit 2) names
    the engine and why not. Every process checks the same facts, so all of them stop together."""
    engine = requested_engine(config)
    config.device  # noqa: B018  (sets up accelerate's PartialState, as the Trainer would)
    problem = engine_problem(engine, config.distributed_state or PartialState())
    if problem:
        raise ValueError(f"training engine: {problem}")
    log.info("training engine: %s on %d process(es)", engine.label, engine.processes)
    return engine


def adjust_config(config, engine: Engine) -> None:
    """What an engine needs set that a recipe would not say: LoRA + ZeRO-3 + gradient checkpointing needs the
    reentrant variant (TRL PR #6356, DeepSpeed #4332: the non-reentrant one re-gathers partitioned weights it
    does not own and fails in backward)."""
    lora = config.finetuning in ("lora", "qlora")
    if engine.shards_parameters and lora and config.merge_adapter:
        raise ValueError(
            f"config key 'merge_adapter': not under {engine.label} (no process holds the whole model); train "
            "without it and merge output_dir's adapter on one process (docs/distributed.md)"
        )
    if engine.kind in ("fsdp", "deepspeed") and getattr(config, "warmup_sft_steps", 0):
        raise ValueError(
            f"config key 'warmup_sft_steps': the warm start is not run under {engine.label}; run it as an SFT of its "
            "own and train from the warmed model (docs/methods.md)"
        )
    if engine.kind == "deepspeed" and engine.zero_stage == 3 and lora and config.checkpointing_on:
        # transformers >= 5 reads activation_checkpointing_kwargs (gradient_checkpointing_kwargs: its old name)
        kwargs = dict(
            getattr(config, "activation_checkpointing_kwargs", None) or config.gradient_checkpointing_kwargs or {}
        )
        if kwargs.get("use_reentrant") is False:
            raise ValueError(
                "config key 'gradient_checkpointing_kwargs': use_reentrant false fails with LoRA under ZeRO-3; "
                "leave it unset (hadpo sets true)"
            )
        kwargs["use_reentrant"] = True
        config.gradient_checkpointing_kwargs = kwargs
        if hasattr(config, "activation_checkpointing_kwargs"):
            config.activation_checkpointing_kwargs = kwargs


@contextlib.contextmanager
def cpu_sharding(engine: Engine) -> Iterator[None]:
    """While the Trainer builds its Accelerator: on a `use_cpu` multi-process launch with HADPO_CPU_SHARDING=1,
    turn accelerate's MULTI_CPU state into the FSDP or DeepSpeed state it would have built on GPUs (the same
    plugin, from the launcher's environment), so that accelerate's own FSDP2 / DeepSpeed code prepares, saves and
    loads the model. Does nothing otherwise."""
    state = PartialState()
    active = (
        engine.kind in ("fsdp", "deepspeed")
        and cpu_sharding_enabled()
        and state.distributed_type == DistributedType.MULTI_CPU
    )
    if not active:
        yield
        return
    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, deepspeed_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, deepspeed_plugin=deepspeed_plugin, **kwargs)
        if self.distributed_type != DistributedType.MULTI_CPU:
            return
        if engine.kind == "fsdp" and fsdp_plugin is not None:
            self.distributed_type, self.fsdp_plugin = DistributedType.FSDP, fsdp_plugin
        elif engine.kind == "deepspeed" and deepspeed_plugin is not None:
            deepspeed_plugin.set_mixed_precision(self._mixed_precision)
            deepspeed_plugin.select(_from_accelerator_state=True)
            self.distributed_type, self.deepspeed_plugins = DistributedType.DEEPSPEED, deepspeed_plugin
            self._mixed_precision = "no"  # DeepSpeed's config holds the precision, as accelerate does on GPUs
        PartialState._shared_state["distributed_type"] = self.distributed_type

    AcceleratorState.__init__ = init
    try:
        yield
    finally:
        AcceleratorState.__init__ = original


def verify_engine(trainer, engine: Engine) -> None:
    """After the Trainer built its Accelerator: the engine asked for is the one it holds."""
    held = trainer.accelerator.distributed_type
    wanted = {"fsdp": DistributedType.FSDP, "deepspeed": DistributedType.DEEPSPEED}.get(engine.kind)
    if wanted is not None and held != wanted:
        raise ValueError(f"training engine: {engine.label} was asked for, but the Trainer's accelerator is {held}")
