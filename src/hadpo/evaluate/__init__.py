"""The evaluation wing (issue 3): the evidence that HA-DPO reduces hallucination.

- `pope` (+ `pope_annotations`, `pope_files`), `chair` (+ `chair_words`), `shr`, `mme`: each benchmark's exact
  protocol, from reading its files to its metrics;
- `report`: results.json, markdown tables, before/after comparisons and plots;
- `suite`: the glue the `hadpo eval` verbs call (models are run through `hadpo.inference`).

Protocols and how they differ from lmms-eval / VLMEvalKit: docs/evaluation.md.
"""
