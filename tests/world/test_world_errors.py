"""Catalogue, the world's verbs (docs/errors.md, "hadpo world and hadpo demo"): a base-model shape that cannot be
built is a config error before the world is drawn, not a failure inside transformers."""

from __future__ import annotations

import pytest

from catalogue import Case, Context, check_documented, run_case


def _pretrain(text: str, verb: str = "pretrain"):
    def setup(ctx: Context) -> list[str]:
        config = ctx.write("config", "demo.yaml", text)
        command = ["world", verb] if verb != "demo" else ["demo"]
        return [*command, "--config", str(config), "--runs-dir", str(ctx.path("runs", "runs"))]

    return setup


CASES = [
    Case(
        "world-vision-heads",
        "`pretrain.vision_hidden` not a multiple of `vision_heads`",
        _pretrain("pretrain:\n  vision_hidden: 100\n  vision_heads: 3\n"),
        "{config}: pretrain: vision_hidden 100 is not a multiple of vision_heads 3 (each attention head gets an "
        "equal share of the width)",
        absent=("runs",),
    ),
    Case(
        "world-text-head-width-odd",
        "a text head width that is odd (`text_hidden: 60`, `text_heads: 4`), in `hadpo demo`",
        _pretrain("pretrain:\n  text_hidden: 60\n  text_heads: 4\n", verb="demo"),
        "{config}: pretrain: text_hidden 60 / text_heads 4 is odd (the rotary embedding turns pairs of a head's "
        "dimensions)",
        absent=("runs",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_world_input_is_one_line(case, tmp_path, monkeypatch, capsys):
    run_case(case, Context(tmp_path, monkeypatch), capsys)


def test_every_case_is_in_the_docs():
    check_documented(CASES)
