"""hadpo.inference (the runner and its answering) on the tiny random LLaVA: both modes, resume, bad images, and
the logits/generate agreement rule on a model whose head is biased so that it answers yes for some questions and
no for others."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from hadpo.inference import (
    ANSWER_VARIANTS,
    DecodingConfig,
    Query,
    answer_token_ids,
    chat_prompt,
    leading_yes_no,
    load_model,
    mode_agreement,
    run_queries,
)
from hadpo.inference.answering import _chunks
from hadpo.records import Answer, read_jsonl
from hadpo.world.tiny import TinyLlavaSpec, build_tiny_llava, train_tokenizer

PROMPTS = ["Is there a dog in the image?", "Is there a red square on the left in the image?", "Is there a cup?"]


def _queries(image_records, repeat=1):
    folder = image_records.parent / "images"
    return [
        Query(f"{index}-{p}-{r}", folder / f"{index}.png", PROMPTS[p], image_id=str(index))
        for r in range(repeat)
        for index in range(4)
        for p in range(len(PROMPTS))
    ]


@pytest.fixture(scope="module")
def yes_no_model():
    """A tiny random LLaVA whose tokenizer has " yes" and " no" as single tokens, like real vocabularies."""
    torch.manual_seed(1)
    corpus = [
        "USER: Is there a dog in the image? ASSISTANT: yes",
        "USER: Is there a cup? ASSISTANT: no",
        "Yes, there is a red square. No, there is no blue circle on the left.",
    ] * 30
    tokenizer = train_tokenizer(corpus, vocab_size=400)
    return build_tiny_llava(tokenizer, TinyLlavaSpec(text_layers=2, text_hidden=64, text_intermediate=128))


def test_answer_tokens_are_the_ones_the_template_writes(tiny_model_dir, yes_no_model):
    _, processor = yes_no_model
    # The template writes "ASSISTANT: yes": the byte-level BPE token is the space-prefixed word.
    assert [processor.tokenizer.convert_ids_to_tokens(s) for s in answer_token_ids(processor, ["yes", "no"])] == [
        ["Ġyes"],
        ["Ġno"],
    ]
    # The shared fixture's small vocabulary splits " yes" into three tokens: the whole word is kept.
    _, small = load_model(tiny_model_dir)
    (yes,) = answer_token_ids(small, ["yes"])
    assert small.tokenizer.convert_ids_to_tokens(yes) == ["Ġ", "y", "es"]


def test_multi_token_answers_are_scored_by_teacher_forcing(tiny_model_dir, image_records, tmp_path):
    model, processor = load_model(tiny_model_dir)
    query = _queries(image_records)[0]
    output = tmp_path / "a.jsonl"
    run_queries(model, processor, [query], output, DecodingConfig(mode="logits"), progress=False)
    (answer,) = read_jsonl(output, Answer)
    # By hand: log P(answer word) = sum of the log-probs of its tokens after the unpadded prompt, summed
    # (logsumexp) over the case variants; the margin is log P(yes) - log P(no).
    inputs = processor(
        images=[Image.open(query.image).convert("RGB")],
        text=[chat_prompt(processor, query.prompt)],
        return_tensors="pt",
    )

    def log_p(words):
        totals = []
        for sequence in answer_token_ids(processor, words):
            ids = torch.cat([inputs["input_ids"], torch.tensor([sequence])], dim=1)
            with torch.no_grad():
                logits = model(input_ids=ids, pixel_values=inputs["pixel_values"]).logits[0]
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            start = inputs["input_ids"].shape[1]
            totals.append(sum(log_probs[start - 1 + k, token] for k, token in enumerate(sequence)))
        return torch.logsumexp(torch.stack(totals), dim=0).item()

    assert answer.margin == pytest.approx(log_p(ANSWER_VARIANTS["yes"]) - log_p(ANSWER_VARIANTS["no"]), abs=1e-4)


def test_generate_and_logits_modes_write_answers_and_resume(tiny_model_dir, image_records, tmp_path):
    model, processor = load_model(tiny_model_dir)
    queries = _queries(image_records)
    output = tmp_path / "answers.jsonl"
    config = DecodingConfig(mode="generate", batch_size=5, max_new_tokens=2)
    first = run_queries(model, processor, queries[:7], output, config, model_name="tiny", progress=False)
    assert (first.written, first.resumed) == (7, 0)
    second = run_queries(model, processor, queries, output, config, model_name="tiny", progress=False)
    assert (second.written, second.resumed) == (len(queries) - 7, 7)
    answers = read_jsonl(output, Answer)
    assert sorted(a.question_id for a in answers) == sorted(q.question_id for q in queries)
    # A run killed mid-write leaves a cut line: it is dropped and that question answered again.
    output.write_text(output.read_text() + '{"question_id": "cut')
    third = run_queries(model, processor, queries, output, config, model_name="tiny", progress=False)
    assert (third.written, third.resumed) == (0, len(queries)) and read_jsonl(output, Answer) == answers
    assert answers[0].generation["max_new_tokens"] == 2 and answers[0].model == "tiny"

    # Resuming with other decoding settings would mix two runs in one file: refused.
    with pytest.raises(ValueError, match="answered by tiny"):
        run_queries(model, processor, queries, output, DecodingConfig(max_new_tokens=5), model_name="tiny")

    # Greedy decoding is deterministic: a fresh run in different batches gives the same texts.
    again = tmp_path / "again.jsonl"
    run_queries(model, processor, queries, again, DecodingConfig(batch_size=3, max_new_tokens=2), progress=False)
    assert {a.question_id: a.text for a in read_jsonl(again, Answer)} == {a.question_id: a.text for a in answers}

    logits_out = tmp_path / "logits.jsonl"
    run_queries(model, processor, queries, logits_out, DecodingConfig(mode="logits", batch_size=12), progress=False)
    for answer in read_jsonl(logits_out, Answer):
        assert answer.text == ("yes" if answer.margin > 0 else "no")
        assert 0.0 < answer.yes_prob < 1.0 and answer.mode == "logits"
    # Left padding does not change the margins: one padded batch of 12 equals 12 batches of one.
    single = tmp_path / "single.jsonl"
    run_queries(model, processor, queries, single, DecodingConfig(mode="logits", batch_size=1), progress=False)
    padded = {a.question_id: a.margin for a in read_jsonl(logits_out, Answer)}
    assert {a.question_id: pytest.approx(padded[a.question_id], abs=1e-3) for a in read_jsonl(single, Answer)} == padded


def test_beam_search_and_seeded_sampling_are_reproducible(tiny_model_dir, image_records, tmp_path):
    model, processor = load_model(tiny_model_dir)
    queries = _queries(image_records)[:3]
    for name, config in [
        ("beam", DecodingConfig(num_beams=2, max_new_tokens=3, batch_size=2)),
        ("sample", DecodingConfig(do_sample=True, temperature=0.8, max_new_tokens=3, batch_size=2)),
    ]:
        runs = [tmp_path / f"{name}{i}.jsonl" for i in range(2)]
        for path in runs:
            run_queries(model, processor, queries, path, config, progress=False)
        assert runs[0].read_text() == runs[1].read_text(), name


def test_missing_image_is_skipped_and_counted(tiny_model_dir, image_records, tmp_path):
    model, processor = load_model(tiny_model_dir)
    queries = _queries(image_records)[:2] + [Query("missing", tmp_path / "nope.png", "Is there a dog?")]
    summary = run_queries(
        model, processor, queries, tmp_path / "a.jsonl", DecodingConfig(mode="logits"), progress=False
    )
    assert (summary.written, summary.skipped, summary.skipped_ids) == (2, 1, ["missing"])


def _bias_head_towards_yes_or_no(model, processor, queries):
    """Make " yes" / " no" dominate the first token, the choice depending on the image and the prompt: their
    head rows are +-s*w for the main direction w of the last hidden states, with a bias that splits the
    questions about in half."""
    [yes_id], [no_id] = answer_token_ids(processor, ["yes", "no"])
    processor.tokenizer.padding_side = "left"
    images = [Image.open(q.image).convert("RGB") for q in queries]
    inputs = processor(
        images=images, text=[chat_prompt(processor, q.prompt) for q in queries], return_tensors="pt", padding=True
    )
    position_ids = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        # The last hidden state is the (normed) input of the head: logits = lm_head(hidden).
        hidden = model(**inputs, position_ids=position_ids, output_hidden_states=True).hidden_states[-1][:, -1]
    centred = hidden - hidden.mean(0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    threshold = (hidden @ direction).median()
    old = model.lm_head
    head = nn.Linear(old.in_features, old.out_features, bias=True)
    scale = 200.0 / (hidden @ direction - threshold).abs().max()
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.weight[yes_id] = scale * direction
        head.weight[no_id] = -scale * direction
        head.bias[yes_id] = -scale * threshold
        head.bias[no_id] = scale * threshold
    model.lm_head = head


def test_logits_mode_agrees_with_generate_mode_when_the_answer_starts_with_yes_or_no(
    yes_no_model, image_records, tmp_path
):
    model, processor = yes_no_model
    queries = _queries(image_records)
    _bias_head_towards_yes_or_no(model, processor, queries)
    generated_path, logits_path = tmp_path / "gen.jsonl", tmp_path / "log.jsonl"
    # Different batch sizes: rows are padded differently in the two modes, so positions must be handled right.
    run_queries(
        model, processor, queries, generated_path, DecodingConfig(batch_size=5, max_new_tokens=2), progress=False
    )
    run_queries(model, processor, queries, logits_path, DecodingConfig(mode="logits", batch_size=3), progress=False)
    generated, logits = read_jsonl(generated_path, Answer), read_jsonl(logits_path, Answer)
    starts = [leading_yes_no(a.text) for a in generated]
    # The situation is not vacuous: most answers start with yes or no, and both occur.
    assert sum(s is not None for s in starts) >= len(queries) // 2
    assert {"yes", "no"} <= set(starts)
    agreement = mode_agreement(generated, logits)
    assert agreement["compared"] == sum(s is not None for s in starts)
    assert agreement["rate"] >= 0.99


def test_mode_agreement_counts_only_answers_starting_with_yes_or_no():
    def answer(qid, text, mode="generate"):
        return Answer(question_id=qid, prompt="p", text=text, mode=mode)

    generated = [answer("1", "Yes, there is."), answer("2", "no."), answer("3", "There is a dog"), answer("4", "No")]
    logits = [
        answer("1", "yes", "logits"),
        answer("2", "yes", "logits"),
        answer("3", "no", "logits"),
        answer("4", "no", "logits"),
    ]
    # Compared: 1, 2, 4 (3 does not start with yes/no); agreed: 1 and 4 -> 2/3.
    assert mode_agreement(generated, logits) == {"compared": 3, "agreed": 2, "rate": 2 / 3}
    assert leading_yes_no("YES!") == "yes" and leading_yes_no("Nope") is None and leading_yes_no("") is None


def test_logits_mode_reads_each_image_once_and_batches_whole_images(tiny_model_dir, image_records, tmp_path):
    model, processor = load_model(tiny_model_dir)
    queries = _queries(image_records)  # 4 images x 3 questions, each image's questions consecutive
    images_read = []
    hook = model.model.vision_tower.register_forward_hook(lambda module, args, out: images_read.append(len(args[0])))
    try:
        run_queries(
            model, processor, queries, tmp_path / "a.jsonl", DecodingConfig(mode="logits", batch_size=7), progress=False
        )
    finally:
        hook.remove()
    assert sum(images_read) == 4  # not 12: one encoding per image, its three questions continue from it
    chunks = [[q.question_id for q in chunk] for chunk in _chunks(queries, 7, by_image=True)]
    assert [len(c) for c in chunks] == [6, 6]  # whole images per batch: 3 + 3 fit in 7, a third would not
    assert [len(c) for c in _chunks(queries, 2, by_image=True)] == [2, 1] * 4  # an image larger than a batch
    assert [len(c) for c in _chunks(queries, 5, by_image=False)] == [5, 5, 2]
