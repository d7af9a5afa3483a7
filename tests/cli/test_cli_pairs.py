"""`hadpo pairs build | judge | import` through the command line: a dry run counts and writes nothing, a build
without a hallucination fails (exit 1) keeping what its stages wrote, an import writes the release's pairs."""

from __future__ import annotations

import json

import yaml

from hadpo.cli import main


def test_cli_build_and_dry_run(image_records, tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "build.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "out_dir": str(tmp_path / "out"),
                "source": {"kind": "folder", "images": str(image_records)},
                "describe": {"model": str(tiny_model_dir), "per_image": 1, "max_new_tokens": 8},
            }
        )
    )
    assert main(["pairs", "build", str(config), "--dry-run"]) == 0
    estimate = json.loads(capsys.readouterr().out)["dry_run"]
    assert estimate["describe"]["descriptions_to_sample"] == 4
    assert estimate["llm_for_new_descriptions"]["judge_calls"] == 0  # the offline judge calls nothing
    assert not (tmp_path / "out" / "descriptions.jsonl").exists()
    # The random model's descriptions name no object, so nothing is hallucinated and no pair can be made: the
    # build fails (exit 1) saying so, and keeps what its stages wrote.
    assert main(["pairs", "build", str(config)]) == 1
    assert "hadpo: error: no pairs: 4 descriptions judged usable" in capsys.readouterr().err
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["descriptions_judged"] + sum(stats["skipped"].values()) == 4
    assert not (tmp_path / "out" / "pairs.jsonl").exists() and (tmp_path / "out" / "config.yaml").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("sauce: {}\n")
    assert main(["pairs", "judge", str(bad)]) == 2


def test_cli_import(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "vg").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "vg" / "7.jpg")
    desc = tmp_path / "desc_data.json"
    desc.write_text(json.dumps([{"image_id": 7, "chosen": ["good"], "rejected": ["bad"]}]))
    output = tmp_path / "out" / "pairs.jsonl"
    assert (
        main(
            ["pairs", "import", "--desc-data", str(desc), "--image-dir", str(tmp_path / "vg"), "--output", str(output)]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["pairs"] == {"desc": 1, "qa": 0, "total": 1}
    assert main(["pairs", "import", "--image-dir", str(tmp_path / "vg")]) == 2  # nothing to import: one line
