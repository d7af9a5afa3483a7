"""Pairs loading and checks, rewrite groups, the per-epoch plan, collators (exact tensors), the aux stream."""

import json

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from hadpo.models import get_family
from hadpo.records import PreferencePair, RecordError, write_jsonl
from hadpo.train.collate import PreferenceCollator, SFTCollator, drop_too_long
from hadpo.train.data import AuxStream, PreferenceDataset, check_prompts, group_rewrites, load_pairs, load_sft_examples
from train_helpers import make_pairs

FAMILY = get_family("llava15")


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return AutoProcessor.from_pretrained(tiny_model_dir)


def _ids(processor, text):
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


def _prompt_and_answers(processor, pair):
    image_tokens = "<image>" * 9  # 48x48 image, 16-pixel patches, CLS dropped
    prompt = [processor.tokenizer.bos_token_id] + _ids(processor, f"USER: {image_tokens}\n{pair.prompt} ASSISTANT:")
    return prompt, [_ids(processor, f" {response}</s>") for response in (pair.chosen, pair.rejected)]


def _padded(rows, value):
    width = max(map(len, rows))
    return torch.tensor([row + [value] * (width - len(row)) for row in rows])


def test_collator_builds_exact_tensors_for_two_sequences_per_pair(processor, pairs_file):
    pairs = load_pairs(pairs_file)
    a, b = pairs[0], pairs[3]  # a description pair and a QA pair on image 0
    batch = PreferenceCollator(processor, FAMILY, shared_prefix=False)([{"pair": a}, {"pair": b}])
    (pa, (ca, ra)), (pb, (cb, rb)) = _prompt_and_answers(processor, a), _prompt_and_answers(processor, b)
    rows = [pa + ca, pb + cb, pa + ra, pb + rb]  # chosen rows first
    label_rows = [[-100] * len(p) + r for p, r in [(pa, ca), (pb, cb), (pa, ra), (pb, rb)]]
    assert torch.equal(batch["input_ids"], _padded(rows, processor.tokenizer.pad_token_id))
    assert torch.equal(batch["labels"], _padded(label_rows, -100))
    assert torch.equal(batch["attention_mask"], _padded([[1] * len(row) for row in rows], 0))
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert not ((batch["labels"] == image_token_id).any())
    pixels = processor.image_processor([Image.open(a.images[0]), Image.open(b.images[0])], return_tensors="pt")
    assert torch.equal(batch["pixel_values"], torch.cat([pixels["pixel_values"]] * 2))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values"}


def test_collator_packs_each_pair_around_one_prompt_by_default(processor, pairs_file):
    pairs = load_pairs(pairs_file)
    a, b = pairs[0], pairs[3]
    batch = PreferenceCollator(processor, FAMILY)([{"pair": a}, {"pair": b}])
    rows, label_rows, branch_rows = [], [], []
    for pair in (a, b):
        prompt, (chosen, rejected) = _prompt_and_answers(processor, pair)
        last = prompt[-1:]  # opens each branch: its logits predict the branch's first token
        rows.append(prompt[:-1] + last + chosen + last + rejected)
        label_rows.append([-100] * len(prompt) + chosen + [-100] + rejected)
        branch_rows.append([0] * (len(prompt) - 1) + [1] * (1 + len(chosen)) + [2] * (1 + len(rejected)))
    assert torch.equal(batch["input_ids"], _padded(rows, processor.tokenizer.pad_token_id))
    assert torch.equal(batch["labels"], _padded(label_rows, -100))
    assert torch.equal(batch["branch_ids"], _padded(branch_rows, -1))
    assert torch.equal(batch["attention_mask"], (batch["branch_ids"] >= 0).long())
    pixels = processor.image_processor([Image.open(a.images[0]), Image.open(b.images[0])], return_tensors="pt")
    assert torch.equal(batch["pixel_values"], pixels["pixel_values"])  # once per pair
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values", "branch_ids"}


def test_collator_carries_precomputed_reference(processor, pairs_file):
    pairs = load_pairs(pairs_file)
    batch = PreferenceCollator(processor, FAMILY)(
        [{"pair": pairs[0], "ref": (-10.5, 7, -12.25, 9)}, {"pair": pairs[1], "ref": (-1.0, 2, -3.0, 4)}]
    )
    assert batch["ref_sums"].tolist() == [-10.5, -1.0, -12.25, -3.0]
    assert batch["ref_counts"].tolist() == [7, 2, 9, 4]


def test_sft_collator_masks_prompt_and_image(processor, image_records):
    examples = load_sft_examples(image_records, "Describe this image briefly.")
    assert [e.response for e in examples] == [
        "A red square. A blue circle. A green knife.",
        "A red dog.",
        "A blue cup. A red fork. A red knife.",
    ]  # the fourth image has no caption
    batch = SFTCollator(processor, FAMILY)(examples[:2])
    answer = processor.tokenizer(" A red dog.</s>", add_special_tokens=False)["input_ids"]
    assert batch["labels"][1][batch["labels"][1] != -100].tolist() == answer
    assert batch["pixel_values"].shape == (2, 3, 48, 48)


def test_prompt_with_its_own_placeholder_is_not_doubled(processor):
    assert FAMILY.prompt_text(processor, "<image>\nWhat is it?", 1) == "USER: <image>\nWhat is it? ASSISTANT:"
    with pytest.raises(ValueError, match="2 image placeholder"):
        FAMILY.prompt_text(processor, "<image><image> What?", 1)


def _write(tmp_path, **changes):
    make_pairs(tmp_path, n_images=1, rewrites=0)
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    rows[0].update(changes)
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    return tmp_path / "pairs.jsonl"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"images": ["images/missing.png"]}, "pair 'd0-0': image not found: .*missing.png"),
        ({"chosen": "   "}, "pair 'd0-0': empty chosen"),
        ({"rejected": "There is a red square."}, "pair 'd0-0': chosen and rejected are identical"),
        ({"pair_id": "q0"}, "pair 'q0': duplicate pair_id"),
        ({"chosen": ""}, "pairs.jsonl:1: field 'chosen'"),
    ],
)
def test_bad_pairs_fail_with_one_line_naming_the_pair(tmp_path, changes, message):
    with pytest.raises(RecordError, match=message):
        load_pairs(_write(tmp_path, **changes))


def test_prompt_without_placeholder_fails_for_a_template_without_images(tmp_path, processor):
    pairs = load_pairs(_write(tmp_path))
    original = processor.chat_template
    try:  # a template that drops image parts: the prompt must then carry the placeholder itself
        processor.chat_template = "{% for m in messages %}{{ m['content'][-1]['text'] }}{% endfor %}"
        with pytest.raises(RecordError, match="pair 'd0-0': prompt has 0 image placeholder"):
            check_prompts(pairs, FAMILY, processor)
    finally:
        processor.chat_template = original


def test_rewrites_group_and_resample_each_epoch(pairs_file):
    groups = group_rewrites(load_pairs(pairs_file))
    # 4 images: one description group of 3 rewrites and one QA group each.
    assert sorted(len(g) for g in groups) == [1] * 4 + [3] * 4
    dataset = PreferenceDataset(groups, mix="1:1", seed=0)
    assert len(dataset) == 8
    epochs = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        epochs.append(sorted(dataset[i]["pair"].pair_id for i in range(len(dataset))))
    assert len({tuple(e) for e in epochs}) > 1  # rewrites differ across epochs
    for ids in epochs:  # but each group appears exactly once per epoch
        assert sorted(i.split("-")[0] for i in ids) == ["d0", "d1", "d2", "d3", "q0", "q1", "q2", "q3"]
    dataset.set_epoch(1)
    again = PreferenceDataset(groups, mix="1:1", seed=0)
    again.set_epoch(1)
    assert [p["pair"].pair_id for p in again] == [p["pair"].pair_id for p in dataset]


def test_mix_repeats_desc_and_qa_groups(pairs_file):
    groups = group_rewrites(load_pairs(pairs_file))
    dataset = PreferenceDataset(groups, mix="2:0.5", seed=3)
    kinds = [dataset[i]["pair"].kind for i in range(len(dataset))]
    assert kinds.count("desc") == 8 and kinds.count("qa") == 2
    with pytest.raises(ValueError, match="DESC:QA"):
        PreferenceDataset(groups, mix="2-1")


def test_qa_pairs_sharing_an_image_stay_separate():
    common = dict(images=["x.png"], chosen="No.", rejected="Yes.", kind="qa", image_id="7")
    pairs = [PreferencePair(prompt=f"Is there a {o}?", pair_id=o, **common) for o in ("dog", "cat")]
    assert sorted(len(g) for g in group_rewrites(pairs)) == [1, 1]


def test_too_long_pairs_are_dropped_with_a_count_or_fail(processor, pairs_file):
    groups = group_rewrites(load_pairs(pairs_file))
    lengths = PreferenceCollator(processor, FAMILY).lengths([g[0] for g in groups])
    limit = sorted(p + max(c, r) for p, c, r in lengths)[4]
    kept, dropped = drop_too_long(groups, PreferenceCollator(processor, FAMILY, limit), "drop")
    assert dropped > 0 and sum(map(len, kept)) == 16 - dropped
    with pytest.raises(RecordError, match="exceed max_length"):
        drop_too_long(groups, PreferenceCollator(processor, FAMILY, limit), "error")


def test_aux_stream_is_the_same_for_one_or_two_processes():
    examples = list(range(10))
    one = AuxStream(examples, batch_size=4, seed=1)
    two = AuxStream(examples, batch_size=2, seed=1)
    for counter in range(4):
        assert one.batch(counter) == two.batch(counter, 0, 2) + two.batch(counter, 1, 2)
    assert [one.batches_before(m, 0.5) for m in range(5)] == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_two_image_pairs_keep_each_image_with_its_sequence(tiny_model_dir, processor, pairs_file, shared_prefix):
    from transformers import AutoModelForImageTextToText

    from hadpo.train.logps import response_logps

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    one, two = load_pairs(pairs_file)[0], load_pairs(pairs_file)[4]
    a = one.model_copy(update={"images": [one.images[0], two.images[0]], "prompt": "Compare the two images."})
    b = two.model_copy(update={"images": [two.images[0], one.images[0]], "prompt": "Compare the two images."})
    collator = PreferenceCollator(processor, FAMILY, shared_prefix=shared_prefix)
    together = collator([{"pair": a}, {"pair": b}])
    image_tokens = (together["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<image>")).sum(1)
    assert image_tokens.tolist() == [18] * (2 if shared_prefix else 4)
    with torch.no_grad():
        both = response_logps(model, together).sums
        alone = torch.cat([response_logps(model, collator([{"pair": p}])).sums for p in (a, b)])
    # both: (a chosen, b chosen, a rejected, b rejected); alone: (a chosen, a rejected, b chosen, b rejected)
    assert torch.allclose(both, alone[[0, 2, 1, 3]], atol=1e-4)
