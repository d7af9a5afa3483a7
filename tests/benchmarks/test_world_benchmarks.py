"""The methods comparison's tables (benchmarks/world/methods.py) from hand-made results of two seeds."""

from benchmarks.world.methods import table, targets_table


def _model(adversarial, recall3):
    return {
        "pope": {"adversarial": {"accuracy": adversarial}, "random": {"accuracy": 0.9}},
        "pope_3": {"adversarial": {"recall": recall3}},
    }


def _seed(seed, base, hadpo, mdpo, met):
    targets = {name: {"adversarial >= 90 %": ok[0], "recall within 5": ok[1]} for name, ok in met.items()}
    return {
        "seed": seed,
        "models": {"base": _model(*base), "hadpo": _model(*hadpo), "mdpo": _model(*mdpo)},
        "training": {"hadpo": {"seconds": 100.0}, "mdpo": {"seconds": 140.0 + seed}},
        "targets": targets,
    }


def test_each_cell_is_the_spread_over_the_seeds_and_targets_count_seeds():
    results = [
        _seed(0, (0.5, 0.99), (0.8, 0.77), (0.91, 0.95), {"hadpo": (False, False), "mdpo": (True, True)}),
        _seed(1, (0.52, 0.99), (0.83, 0.75), (0.89, 0.96), {"hadpo": (False, False), "mdpo": (False, True)}),
    ]
    rows = {line.split(" | ")[0].strip("| "): line for line in table(results).splitlines()[2:]}
    assert rows["base"].startswith("| base | 50.0 .. 52.0 |") and "| 99.0 |" in rows["base"]
    assert rows["mdpo"].startswith("| mdpo | 89.0 .. 91.0 |") and "| 95.0 .. 96.0 |" in rows["mdpo"]
    assert rows["mdpo"].endswith("| 140.0 .. 141.0 | 2 / 1 |") and rows["base"].endswith("| - | - / - |")
    targets = targets_table(results).splitlines()
    assert targets[0] == "| target | hadpo | mdpo |"
    assert targets[2] == "| adversarial >= 90 % | 0/2 | 1/2 |" and targets[3] == "| recall within 5 | 0/2 | 2/2 |"
