"""Judges of image descriptions behind one protocol (`base.Judge`): the offline `annotations` judge
(`offline.AnnotationJudge`: the claims it reads in `claims`, its corrected descriptions in `corrections`) and the
`llm` judge over any OpenAI-compatible endpoint (`llm.LLMJudge`, its client in `llm_client`). Used by pair
construction (positives) and by SHR (evaluation).
"""
