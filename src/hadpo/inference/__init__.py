"""Batched inference over any `AutoModelForImageTextToText` + processor: the one way hadpo asks a model about
images, for the pairs stage (sampled descriptions, the model's own yes/no answers) and for the benchmarks alike.

One `Answer` record (hadpo.records) per question is appended to a JSONL file as each batch finishes, so an
interrupted run resumes by skipping the question ids already in the file (issue 3, "Inference runner").
`DecodingConfig` is the one declaration of decoding settings; config sections that decode extend it.

Two modes:
- `generate`: decode up to `max_new_tokens` (greedy by default; beam search or seeded sampling configurable);
- `logits`: answer yes/no from the next-token probabilities of the answer words (`hadpo.inference.yes_no`:
  an image's questions from one encoding of it); the record keeps `yes_prob` = P(yes) / (P(yes) + P(no)) and
  `margin` = log P(yes) - log P(no).
A generated answer is read as yes / no by POPE's official rule (`parse_answer`, Li et al. 2023, arXiv 2305.10355).

Prompts take the model family's own format where hadpo has an adapter for it (`hadpo.models`: InstructBLIP's
plain instruction, MiniGPT-4's template), else the processor's chat template; an encoder-decoder language model
(InstructBLIP-FlanT5) answers in its decoder. Launched on several processes (`accelerate launch`), the runner
spreads each call's questions over them (`hadpo.inference.parallel`).

Modules: `decoding` (DecodingConfig), `answering` (one model answering in this process), `runner` (what each
process answers, resuming, shards), `yes_no` and `image_prefix` (logits mode), `packing` (packed rows, shared with
training), `parallel` (the multi-process transport). Their public names are importable from here.
"""

from hadpo.inference.answering import Query, RunSummary, answer_queries, answered_ids, chat_prompt, load_model
from hadpo.inference.decoding import DecodingConfig
from hadpo.inference.runner import DESCRIBE_PROMPT, describe_images, run_queries, serve_if_worker
from hadpo.inference.yes_no import ANSWER_VARIANTS, answer_token_ids, leading_yes_no, mode_agreement, parse_answer

__all__ = [
    "ANSWER_VARIANTS",
    "DESCRIBE_PROMPT",
    "DecodingConfig",
    "Query",
    "RunSummary",
    "answer_queries",
    "answer_token_ids",
    "answered_ids",
    "chat_prompt",
    "describe_images",
    "leading_yes_no",
    "load_model",
    "mode_agreement",
    "parse_answer",
    "run_queries",
    "serve_if_worker",
]
