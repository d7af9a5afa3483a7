"""The evaluation wing (issue 3): the evidence that HA-DPO reduces hallucination.

- `runner`: batched inference over any image-text-to-text model (generate / logits modes, resumable);
- `pope`, `chair`, `shr`, `mme`: each benchmark's exact protocol, from reading its files to its metrics;
- `report`: results.json, markdown tables, before/after comparisons and plots;
- `suite`: the glue the `hadpo eval` verbs call.

Protocols and how they differ from lmms-eval / VLMEvalKit: docs/evaluation.md.
"""
