"""Fixtures for the training wing: a config builder for fast CPU runs on the session's tiny LLaVA and the shared
pairs file (tests/conftest.py)."""

from __future__ import annotations

import pytest

from hadpo.config import load_config
from hadpo.train.config import HADPOConfig


@pytest.fixture
def make_config(tiny_model_dir, pairs_file, tmp_path):
    """HADPOConfig for a quick CPU run; keyword arguments override."""

    def build(**overrides):
        values = dict(
            model_name_or_path=str(tiny_model_dir),
            pairs=str(pairs_file),
            output_dir=str(tmp_path / "run"),
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            per_device_train_batch_size=2,
            per_device_eval_batch_size=4,
            learning_rate=5e-3,
            lora_r=8,
            lora_alpha=16,
            max_steps=3,
            seed=0,
            disable_tqdm=True,
        )
        values.update(overrides)
        return load_config(HADPOConfig, None, values)

    return build
