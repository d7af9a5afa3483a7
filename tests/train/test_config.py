"""HADPOConfig: strict YAML loading, overrides, validation, and every training recipe in configs/."""

from pathlib import Path

import pytest
import yaml

from hadpo.config import config_values, load_config, save_config
from hadpo.train.config import HADPOConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
REQUIRED = ["model_name_or_path=m", "pairs=p.jsonl", "use_cpu=true"]


def training_recipes():
    """Top-level YAML files of configs/ that are training configs (they name a model and pairs)."""
    found = []
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and {"model_name_or_path", "pairs"} <= set(data):
            found.append(path)
    return found


def test_the_paper_recipe_is_among_the_recipes():
    assert "llava15_7b_hadpo.yaml" in [p.name for p in training_recipes()]


def _as_written(held, written):
    """The config's value in the recipe's terms: enums by value, YAML's `no` as the string the field holds,
    numbers compared as numbers ("2e-6" is read as a string by YAML 1.1 and converted by the loader)."""
    held = getattr(held, "value", held)
    if isinstance(held, float) and isinstance(written, int | float | str) and not isinstance(written, bool):
        return held, float(written)
    if isinstance(held, str) and isinstance(written, bool):
        return held, "yes" if written else "no"
    if written == "none" and held == []:  # report_to: none means no integration; transformers writes []
        return held, []
    return held, written


@pytest.mark.parametrize("recipe", training_recipes(), ids=lambda p: p.name)
def test_every_training_recipe_loads_as_written_and_reloads_from_what_a_run_saves(recipe, tmp_path):
    """Every key a recipe writes reaches the config with the value written (none dropped, renamed or converted
    into something else), and the resolved config a run saves beside its outputs loads back to the same config."""
    written = yaml.safe_load(recipe.read_text())
    # use_cpu lets bf16 recipes validate on a machine without a GPU.
    overrides = {"use_cpu": True, "output_dir": str(tmp_path)}
    config = load_config(HADPOConfig, recipe, overrides)
    for key, value in {**written, **overrides}.items():
        held, expected = _as_written(getattr(config, key), value)
        assert held == expected, f"{recipe.name}: {key}: written {value!r}, the config holds {held!r}"
    saved = save_config(config, tmp_path / "hadpo_config.yaml")
    assert config_values(load_config(HADPOConfig, saved)) == config_values(config)


def test_paper_hyperparameters_for_llava15(tmp_path):
    config = load_config(HADPOConfig, CONFIGS / "llava15_7b_hadpo.yaml", ["use_cpu=true", f"output_dir={tmp_path}"])
    assert (config.lora_r, config.lora_alpha, config.learning_rate, config.beta) == (128, 256, 2e-6, 0.1)
    assert (config.num_train_epochs, config.lr_scheduler_type.value, config.warmup_steps) == (
        1,
        "cosine",
        0.03,
    )
    assert config.bf16 and config.max_grad_norm == 1.0 and config.lora_target is None  # all LM linear layers
    assert config.freeze_vision_tower and config.freeze_projector


def test_overrides_are_typed_yaml_scalars():
    config = load_config(
        HADPOConfig, None, [*REQUIRED, "learning_rate=1e-4", "beta=0.5", "save_strategy=no", "max_length=64"]
    )
    assert config.learning_rate == 1e-4 and config.beta == 0.5 and config.max_length == 64
    assert config.save_strategy.value == "no"  # YAML reads `no` as False; the field wants a string


@pytest.mark.parametrize(
    "override, message",
    [
        ("bta=0.2", "unknown config key 'bta' (did you mean 'beta'?)"),
        ("beta=0", "'beta' must be > 0"),
        ("reference=twin", "config key 'reference': 'twin' is not one of adapters, copy, precomputed"),
        ("data_mix=2", "data_mix must look like 'DESC:QA'"),
        ("label_smoothing=0.5", "'label_smoothing' must be in [0, 0.5)"),
        ("max_length=0", "'max_length' must be positive"),
        ("beta", "override 'beta' is not key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ValueError) as error:
        load_config(HADPOConfig, None, [*REQUIRED, override])
    assert message in str(error.value)


def test_unknown_key_in_a_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model_name_or_path: m\npairs: p\nlora_alpah: 8\n")
    with pytest.raises(ValueError, match=r"recipe.yaml: unknown config key 'lora_alpah' \(did you mean 'lora_alpha'"):
        load_config(HADPOConfig, path)


def test_required_keys_and_resolved_config_roundtrip(tmp_path):
    with pytest.raises(ValueError, match="config key 'pairs' is required"):
        load_config(HADPOConfig, None, ["model_name_or_path=m"])
    config = load_config(HADPOConfig, None, [*REQUIRED, "gamma=0.5", "sft_data=s.jsonl", f"output_dir={tmp_path}"])
    save_config(config, tmp_path / "resolved.yaml")
    again = load_config(HADPOConfig, tmp_path / "resolved.yaml")
    assert (again.gamma, again.sft_data, again.beta, again.use_cpu) == (0.5, "s.jsonl", 0.1, True)


def test_every_hadpo_option_has_help_text():
    lines = HADPOConfig.help_lines()
    assert len(lines) > 25 and all(line.split(": ", 1)[1] for line in lines)
