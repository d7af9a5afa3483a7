"""Judges of image descriptions behind one protocol (`base.Judge`): the offline `annotations` judge
(`offline.AnnotationJudge`) and the `llm` judge over any OpenAI-compatible endpoint (`llm.LLMJudge`). Used by pair
construction (positives) and by SHR (evaluation).
"""
