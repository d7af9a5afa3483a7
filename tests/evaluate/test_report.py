"""Reports: results.json merging, markdown tables with deltas worked out by hand, and the PNG plots."""

from __future__ import annotations

from hadpo.evaluate.report import compare_markdown, load_results, plot_comparison, update_results

POPE_BEFORE = {"accuracy": 0.5113, "precision": 0.505, "recall": 0.99, "f1": 0.6713, "yes_ratio": 0.9866}
POPE_AFTER = {"accuracy": 0.8613, "precision": 0.9, "recall": 0.8, "f1": 0.8496, "yes_ratio": 0.422}


def test_sections_merge_into_results_json_and_markdown(tmp_path):
    update_results(
        tmp_path, "pope", {"parsing": "official", "splits": {"random": POPE_BEFORE}, "mean": POPE_BEFORE}, model="base"
    )
    update_results(tmp_path, "shr", {"shr": 0.473, "words_per_image": 80.5, "skipped": 2})
    results = load_results(tmp_path)
    assert results["model"] == "base" and set(results) == {"model", "pope", "shr"}
    markdown = (tmp_path / "results.md").read_text()
    assert "| POPE random accuracy | 51.13 |" in markdown
    assert "| SHR | 47.30 |" in markdown and "| words / image | 80.50 |" in markdown
    assert "Skipped records: shr 2" in markdown


def test_comparison_table_deltas(tmp_path):
    before = {
        "pope": {"splits": {"random": POPE_BEFORE}, "mean": POPE_BEFORE},
        "shr": {"shr": 0.473},
        "mme": {"perception": 932.0, "subtasks": {"existence": {"score": 100.0}}},
    }
    after = {
        "pope": {"splits": {"random": POPE_AFTER}, "mean": POPE_AFTER},
        "shr": {"shr": 0.444},
        "mme": {"perception": 1326.46, "subtasks": {"existence": {"score": 185.0}}},
    }
    table = compare_markdown(before, after)
    # accuracy 51.13 -> 86.13: +35.00 points; yes-ratio 98.66 -> 42.20: -56.46; SHR 47.3 -> 44.4: -2.90;
    # MME perception 932 -> 1326.46: +394.46.
    assert "| POPE random accuracy | 51.13 | 86.13 | +35.00 |" in table
    assert "| POPE random yes_ratio | 98.66 | 42.20 | -56.46 |" in table
    assert "| SHR | 47.30 | 44.40 | -2.90 |" in table
    assert "| MME perception | 932.00 | 1326.46 | +394.46 |" in table
    assert "| MME existence | 100.00 | 185.00 | +85.00 |" in table
    # A metric only one side has shows "-" for the other side and the delta.
    assert "| CHAIRs | - | 10.00 | - |" in compare_markdown({}, {"chair": {"chair_s": 0.1}})

    written = plot_comparison({"before": before, "after": after}, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["hallucination.png", "pope_metrics.png", "pope_yes_ratio.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
