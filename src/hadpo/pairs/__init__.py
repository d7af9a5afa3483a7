"""Pair construction, HA-DPO (arXiv 2311.16839) section 3: describe -> judge and correct -> style-consistent
rewrites -> QA pairs -> `pairs.jsonl`. Entry point: `hadpo.pairs.build.run_build`; format and stages in docs/pairs.md.
"""
