"""Catalogue, every verb: config files and overrides that cannot work, paths that cannot be read or written, and
how the command line reports them (docs/errors.md, "Configs and paths"); `hadpo.errors` on its own."""

from __future__ import annotations

import argparse
import logging

import pytest

from catalogue import Case, Context, check_documented, run_case
from hadpo.errors import RedactingFilter, os_error_line, redact, register_secret


def _pairs(ctx: Context, text: str | bytes, *overrides: str) -> list[str]:
    config = ctx.write("config", "build.yaml", text)
    return ["pairs", "build", str(config), *overrides]


def _train(ctx: Context, text: str, *overrides: str) -> list[str]:
    return ["train", str(ctx.write("config", "recipe.yaml", text)), *overrides]


def _folder_config(ctx: Context) -> list[str]:
    ctx.path("config", "configs/build.yaml").mkdir()
    return ["pairs", "build", ctx.names["config"]]


def _out_dir_is_a_file(ctx: Context) -> list[str]:
    ctx.write("file", "taken", "a file where the build folder should be\n")
    return _pairs(ctx, f"out_dir: {ctx.names['file']}/build\n")


def _convert(ctx: Context, config: str | None = None, out: str = "converted") -> list[str]:
    argv = [
        "models",
        "convert-minigpt4",
        "--variant",
        "llama2",
        "--checkpoint",
        str(ctx.path("checkpoint", "ckpt.pth")),
        "--vision",
        str(ctx.path("vision", "eva_vit_g.pth")),
        "--language-model",
        str(ctx.path("lm", "llama")),
        "--out",
        str(ctx.path("out", out)),
    ]
    if config is not None:
        argv += ["--config", str(ctx.write("json", "config.json", config))]
    return argv


def _convert_out_is_a_file(ctx: Context) -> list[str]:
    argv = _convert(ctx, out="taken")
    ctx.write("out", "taken", "a file\n")
    return argv


CASES = [
    Case(
        "config-missing",
        "the config file does not exist",
        lambda ctx: ["pairs", "build", str(ctx.path("config", "nope.yaml"))],
        "{config}: no such file or directory",
    ),
    Case(
        "config-folder",
        "a folder given as the config file",
        _folder_config,
        "{config}: is a folder, not a YAML config file",
    ),
    Case(
        "config-invalid-yaml",
        "a config that is not YAML (an unclosed list)",
        lambda ctx: _pairs(ctx, "a: [1,\n"),
        "{config}:2: invalid YAML (expected the node content, but found '<stream end>')",
    ),
    Case(
        "config-not-text",
        "a binary file given as the config",
        lambda ctx: _pairs(ctx, b"\x89PNG\r\n\x1a\n\xff\xfe"),
        "{config}: not UTF-8 text (is it a YAML config?)",
    ),
    Case(
        "config-yaml-list",
        "a YAML list instead of a mapping",
        lambda ctx: _pairs(ctx, "- 1\n- 2\n"),
        "{config}: a config must be a YAML mapping, not list",
    ),
    Case(
        "train-config-yaml-list",
        "a YAML list as a training recipe",
        lambda ctx: _train(ctx, "- beta\n"),
        "{config}: a config must be a YAML mapping, not list",
    ),
    Case(
        "config-unknown-key",
        "a misspelt section",
        lambda ctx: _pairs(ctx, "sauce: {}\n"),
        "{config}: unknown section 'sauce' (did you mean 'source'?)",
    ),
    Case(
        "config-wrong-type",
        '`describe.per_image: "two"`',
        lambda ctx: _pairs(ctx, "describe:\n  per_image: two\n"),
        "{config}: describe.per_image: Input should be a valid integer, unable to parse string as an integer",
    ),
    Case(
        "config-nan",
        "`judge.llm.temperature=.nan` on the command line",
        lambda ctx: _pairs(ctx, "{}\n", "judge.llm.temperature=.nan"),
        "{config}: judge.llm.temperature: Input should be a finite number",
    ),
    Case(
        "override-not-key-value",
        "an override without `=`",
        lambda ctx: _train(ctx, "beta: 0.1\n", "beta"),
        "override 'beta' is not key=value",
    ),
    Case(
        "override-not-yaml",
        "an override whose value is not a YAML scalar",
        lambda ctx: _pairs(ctx, "{}\n", "source.images=[1,"),
        "override 'source.images=[1,': the value is not a YAML scalar",
    ),
    Case(
        "out-dir-under-a-file",
        "`out_dir` inside a path that is a file",
        _out_dir_is_a_file,
        "out_dir {file}/build: {file} exists and is not a folder",
    ),
    Case(
        "convert-config-not-json",
        "`models convert-minigpt4 --config` that is not JSON",
        lambda ctx: _convert(ctx, "{num_query_tokens: 32}"),
        "{json}:1: not valid JSON (Expecting property name enclosed in double quotes, column 2)",
    ),
    Case(
        "convert-config-not-an-object",
        "a --config holding a list",
        lambda ctx: _convert(ctx, "[32]"),
        "--config {json}: expected a JSON object of MiniGPT4Config keys",
    ),
    Case(
        "convert-out-is-a-file",
        "`--out` naming a file",
        _convert_out_is_a_file,
        "--out {out}: {out} exists and is not a folder",
    ),
    Case(
        "convert-checkpoint-missing",
        "a --checkpoint that does not exist",
        _convert,
        "--checkpoint {checkpoint}: no such file",
        absent=("converted",),
    ),
    Case(
        "convert-language-model-missing",
        "a --language-model folder that does not exist",
        lambda ctx: (ctx.write("c", "ckpt.pth", b"x"), ctx.write("v", "eva_vit_g.pth", b"x"), _convert(ctx))[2],
        "--language-model {lm}: no such model folder (nor a hub id 'org/name')",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_config_or_path_is_one_line(case, tmp_path, monkeypatch, capsys):
    run_case(case, Context(tmp_path, monkeypatch), capsys)


def test_every_case_is_in_the_docs():
    check_documented(CASES)


def test_an_interrupted_run_exits_130_with_one_line(monkeypatch, capsys):
    import hadpo.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=interrupted, verbose=False)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 130
    assert capsys.readouterr().err == "hadpo: error: interrupted; rerun the same command to resume\n"


def test_redact_removes_a_key_whole_or_in_part():
    register_secret("sk-test-0123456789abcdef")
    assert redact("key sk-test-0123456789abcdef here") == "key [redacted] here"
    # A key quoted in part ("sk-test-0123...cdef") still gives 8 characters of it in a row away.
    assert redact("Incorrect API key provided: sk-test-0123****cdef.") == "Incorrect API key provided: [redacted]"
    assert redact("nothing secret: sk-other-key") == "nothing secret: sk-other-key"
    register_secret("abc")  # a short key is redacted where it stands alone, not inside other words
    assert redact("abc in abcdef") == "[redacted] in abcdef"


def test_log_lines_are_redacted(caplog):
    register_secret("sk-log-secret-999")
    logger = logging.getLogger("hadpo.test_redaction")
    handler = caplog.handler
    handler.addFilter(RedactingFilter())
    try:
        logger.warning("the endpoint said: bad key %s", "sk-log-secret-999")
    finally:
        handler.removeFilter(handler.filters[-1])
    assert "sk-log-secret-999" not in caplog.text and "[redacted]" in caplog.text


def test_os_errors_name_the_path():
    assert os_error_line(FileNotFoundError(2, "No such file or directory", "a.yaml")) == (
        "a.yaml: no such file or directory"
    )
    assert os_error_line(OSError("a message of its own")) == "a message of its own"
