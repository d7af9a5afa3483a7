"""Judges of image descriptions behind one protocol (`base.Judge`), and the rewriters of description pairs, used by
pair construction (positives, rewrites) and by SHR (evaluation). `config` is their one home: `JudgeConfig` and
`RewriteConfig`, and `make_judge` / `make_rewriter`, which build every kind. The offline `annotations` judge is
`offline.AnnotationJudge` (the claims it reads in `claims`, its corrected descriptions in `corrections`), the
offline rewriter `paraphrase.ParaphraseRewriter`; the `llm` judge and rewriter over any OpenAI-compatible endpoint
are in `llm` (their prompts and answers in `llm_answers`, the client in `llm_client`, its cache in `llm_cache`).
"""
