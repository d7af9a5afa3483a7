"""Scripts that print figures, never timed tests. Run them from the repository root as modules, e.g.
`python -m benchmarks.speed.train_speed`; `make bench` runs the speed benchmarks.

- `benchmarks.speed`: hadpo against a baseline on the same work (training against TRL, yes/no evaluation in
  logits mode against generate mode), on random-init models built from config: docs/benchmarks.md.
- `benchmarks.world`: research on the scene world's recipe (base model, demo seeds, POPE construction): the
  figures of docs/world.md and docs/demo.md.
"""
