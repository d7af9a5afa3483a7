"""Collators: preference pairs and SFT examples into model batches.

They apply the processor's chat template (one processor call per batch), mask prompt, image and padding tokens out
of the labels and pad on the right, so that a sequence's log-probs do not depend on how it is padded. By default a
pair is one packed row, `[prompt[:-1] | p, chosen | p, rejected]` with `branch_ids` (the shared-prefix layout of
`hadpo.train.logps`: image and prompt encoded once per pair, issue 13); with `shared_prefix=False` B pairs are 2B
sequences (chosen rows first), prompt and image tensors repeated. Sequences are never truncated (that could cut
through image tokens): too-long pairs are dropped with a count or fail the run, by option, before training starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from hadpo.inference.packing import PADDING, PREFIX
from hadpo.models.base import VLMFamily
from hadpo.records import PreferencePair, RecordError, SFTExample
from hadpo.train.corruption import ImageCorruption
from hadpo.train.logps import IGNORE_INDEX
from hadpo.train.weights import diff_token_masks, pair_severity, span_token_mask


def load_image(path: str) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


class Encoder:
    """Templated prompts (with image tokens expanded by the processor) and response tokens, for one family.

    With `decoder_start_token_id` (an encoder-decoder language model: InstructBLIP-FlanT5) the prompt is the
    encoder's input and the response the decoder's, laid out as a decoder-only sequence whose prompt is the start
    token: `decoder_input_ids` = [start, r1 .. rn], `labels` = [-100, r1 .. rn], so that the decoder's logits
    meet the labels with the same one-position shift as everywhere else."""

    def __init__(
        self, processor, family: VLMFamily, max_length: int | None = None, decoder_start_token_id: int | None = None
    ):
        self.processor = processor
        self.family = family
        self.tokenizer = processor.tokenizer
        self.max_length = max_length
        self.decoder_start_token_id = decoder_start_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id

    def prompts(self, rows: Sequence[tuple[list, str]]) -> tuple[list[torch.Tensor], dict]:
        """Prompt ids per row (unpadded) and the image tensors of the batch, from one processor call. A row's
        images are file paths or PIL images."""
        texts = [self.family.prompt_text(self.processor, prompt, len(images)) for images, prompt in rows]
        images = [load_image(image) if isinstance(image, str) else image for images, _ in rows for image in images]
        # No image in the batch (text-only SFT rows): None, as `images=[]` gives an empty pixel_values tensor.
        encoded = self.processor(images=images or None, text=texts, padding=True, return_tensors="pt")
        ids = [row[mask.bool()] for row, mask in zip(encoded["input_ids"], encoded["attention_mask"])]
        return ids, {key: encoded[key] for key in self.family.image_keys if key in encoded}

    def response(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(self.family.response_text(self.processor, text), add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def response_offsets(self, text: str) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The response's token ids (as `response`) and each token's character offsets in `text` itself (the
        template's additions, such as an end-of-turn token, fall outside it)."""
        templated = self.family.response_text(self.processor, text)
        start = templated.find(text)
        if not getattr(self.tokenizer, "is_fast", False) or start < 0:
            why = "its tokenizer gives no offsets" if start >= 0 else "its template changes the response text"
            raise ValueError(f"token_weighting=labels cannot place spans on {self.family.name} responses: {why}")
        encoded = self.tokenizer(templated, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [(begin - start, end - start) for begin, end in encoded["offset_mapping"]]
        return torch.tensor(encoded["input_ids"], dtype=torch.long), offsets

    def pad(self, prompts: list[torch.Tensor], responses: list[torch.Tensor]) -> dict:
        """Concatenate prompt + response per sequence, pad right; labels are the response tokens only."""
        self._check_length(max(len(p) + len(r) for p, r in zip(prompts, responses)))
        if self.decoder_start_token_id is not None:
            return self._pad_encoder_decoder(prompts, responses)
        rows = [
            (torch.cat([prompt, response]), torch.cat([torch.full_like(prompt, IGNORE_INDEX), response]), None)
            for prompt, response in zip(prompts, responses)
        ]
        return self._stack(rows)

    def pack(self, prompts: list[torch.Tensor], branches: list[list[torch.Tensor]]) -> dict:
        """One row per prompt: `[prompt[:-1] | p, branches[0][i] | p, branches[1][i] ...]` with `branch_ids`
        (0 prompt, k for branch k, -1 padding), `p` the prompt's last token; labels are the responses."""
        self._check_length(max(len(p) + len(r) for responses in branches for p, r in zip(prompts, responses)))
        rows = []
        for i, prompt in enumerate(prompts):
            ids, labels, branch_ids = [prompt[:-1]], [torch.full_like(prompt[:-1], IGNORE_INDEX)], [PREFIX]
            lengths = [len(prompt) - 1]
            for branch, responses in enumerate(branches, start=1):
                ids += [prompt[-1:], responses[i]]
                labels += [torch.tensor([IGNORE_INDEX]), responses[i]]
                branch_ids.append(branch)
                lengths.append(1 + len(responses[i]))
            segments = torch.tensor(branch_ids).repeat_interleave(torch.tensor(lengths))
            rows.append((torch.cat(ids), torch.cat(labels), segments))
        return self._stack(rows)

    def _check_length(self, longest: int) -> None:
        if self.max_length is not None and longest > self.max_length:
            raise ValueError(f"a sequence of {longest} tokens exceeds max_length {self.max_length}")

    def _stack(self, rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]) -> dict:
        width = max(len(ids) for ids, _, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        branch_ids = torch.full((len(rows), width), PADDING, dtype=torch.long)
        for row, (ids, row_labels, segments) in enumerate(rows):
            n = len(ids)
            input_ids[row, :n], labels[row, :n], attention_mask[row, :n] = ids, row_labels, 1
            if segments is not None:
                branch_ids[row, :n] = segments
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if rows[0][2] is not None:
            batch["branch_ids"] = branch_ids
        if self.family.mm_token_types:
            batch["mm_token_type_ids"] = (input_ids == self.family.image_token_id(self.processor)).long()
        return batch

    def _pad_encoder_decoder(self, prompts: list[torch.Tensor], responses: list[torch.Tensor]) -> dict:
        start = torch.tensor([self.decoder_start_token_id])
        decoder = [torch.cat([start, response]) for response in responses]
        input_ids, attention_mask = _right_padded(prompts, self.pad_id)
        decoder_input_ids, decoder_attention_mask = _right_padded(decoder, self.pad_id)
        labels = decoder_input_ids.masked_fill(decoder_attention_mask == 0, IGNORE_INDEX)
        labels[:, 0] = IGNORE_INDEX  # the start token is given, not predicted
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
            "labels": labels,
        }


def _right_padded(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (len(rows), longest), padded on the right."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return ids, mask


class PreferenceCollator(Encoder):
    """B pairs -> B packed rows (`shared_prefix`, the default) or 2B sequences (chosen rows 0..B-1, rejected
    rows B..2B-1). Either way `response_logps` returns chosen log-probs first, then rejected. A batch holding a
    pair with `rejected_images` (an image-contrast pair) uses the sequences, the rejected rows reading those images.

    Options of the newer methods (docs/methods.md): `token_weighting` adds `token_weights` (the marked tokens weigh
    `token_weight`, the rest 1); `pair_weighting="severity"` adds `pair_severity` (B,); `corruption` adds a
    `corrupted` batch, the chosen answers after the corrupted images (mDPO), in the sequences layout."""

    def __init__(
        self,
        processor,
        family: VLMFamily,
        max_length: int | None = None,
        decoder_start_token_id: int | None = None,
        shared_prefix: bool = True,
        token_weighting: str = "none",
        token_weight: float = 3.0,
        pair_weighting: str = "none",
        corruption: ImageCorruption | None = None,
    ):
        super().__init__(processor, family, max_length, decoder_start_token_id)
        # An encoder-decoder LM reads the prompt in its encoder: there is no prefix to share in the decoder.
        self.shared_prefix = shared_prefix and decoder_start_token_id is None
        self.token_weighting, self.token_weight = token_weighting, token_weight
        self.pair_weighting, self.corruption = pair_weighting, corruption

    def __call__(self, examples: list[dict]) -> dict:
        pairs = [example["pair"] for example in examples]
        contrast = any(pair.rejected_images for pair in pairs)
        # With a corruption the images are read once here, for the prompts and for their corrupted copies.
        images = [
            [load_image(path) for path in pair.images] if self.corruption is not None else pair.images for pair in pairs
        ]
        rows = [(row_images, pair.prompt) for row_images, pair in zip(images, pairs)]
        rows += (
            [(pair.rejected_images or row_images, pair.prompt) for row_images, pair in zip(images, pairs)]
            if contrast
            else []
        )
        prompt_ids, image_inputs = self.prompts(rows)
        (chosen, rejected), weights = self.responses(pairs)
        if self.shared_prefix and not contrast:
            batch = self.pack(prompt_ids, [chosen, rejected]) | image_inputs
            row_weights = None if weights is None else [torch.cat(w) for w in zip(*weights)]
        else:
            if not contrast:
                prompt_ids = prompt_ids + prompt_ids
                image_inputs = {key: torch.cat([value, value]) for key, value in image_inputs.items()}
            batch = self.pad(prompt_ids, chosen + rejected) | image_inputs
            row_weights = None if weights is None else weights[0] + weights[1]
        if row_weights is not None:
            batch["token_weights"] = place_weights(batch["labels"], row_weights)
        if self.pair_weighting == "severity":
            batch["pair_severity"] = torch.tensor([pair_severity(pair) for pair in pairs], dtype=torch.float32)
        refs = [example.get("ref") for example in examples]
        if refs[0] is not None:
            refs = torch.tensor(refs, dtype=torch.float64)
            batch["ref_sums"] = torch.cat([refs[:, 0], refs[:, 2]]).float()
            batch["ref_counts"] = torch.cat([refs[:, 1], refs[:, 3]]).float()  # token weights: not integral
        if self.corruption is not None:
            batch["corrupted"] = self.corrupted(pairs, images, chosen, None if weights is None else weights[0])
            if refs[0] is not None:
                batch["corrupted"] |= {"ref_sums": refs[:, 4].float(), "ref_counts": refs[:, 5].float()}
        return batch

    def responses(self, pairs: Sequence[PreferencePair]) -> tuple[tuple[list, list], tuple[list, list] | None]:
        """((chosen ids, rejected ids), (chosen weights, rejected weights) or None), one tensor per pair."""
        if self.token_weighting == "labels":
            marked = []
            for pair in pairs:
                (chosen_ids, chosen_offsets), (rejected_ids, rejected_offsets) = (
                    self.response_offsets(pair.chosen),
                    self.response_offsets(pair.rejected),
                )
                masks = (
                    span_token_mask(chosen_offsets, pair.chosen_spans),
                    span_token_mask(rejected_offsets, pair.rejected_spans),
                )
                marked.append(((chosen_ids, rejected_ids), masks))
            chosen, rejected = [ids[0] for ids, _ in marked], [ids[1] for ids, _ in marked]
            masks = [mask for _, mask in marked]
        else:
            chosen, rejected = [self.response(p.chosen) for p in pairs], [self.response(p.rejected) for p in pairs]
            if self.token_weighting == "none":
                return (chosen, rejected), None
            masks = [diff_token_masks(c.tolist(), r.tolist()) for c, r in zip(chosen, rejected)]
        return (chosen, rejected), tuple([self.weights(mask[side]) for mask in masks] for side in (0, 1))

    def weights(self, mask: list[bool]) -> torch.Tensor:
        """`token_weight` on the marked tokens, 1 elsewhere."""
        return 1 + (self.token_weight - 1) * torch.tensor(mask, dtype=torch.float32)

    def corrupted(
        self, pairs: Sequence[PreferencePair], images: list[list], chosen: list, weights: list | None
    ) -> dict:
        """The chosen answers after the pairs' corrupted images (`images`: each pair's, loaded; their
        `rejected_images` where they have them)."""
        rows = []
        for pair, pair_images in zip(pairs, images):
            corrupted = pair.rejected_images or [
                self.corruption(image, f"{pair.pair_id}:{index}") for index, image in enumerate(pair_images)
            ]
            rows.append((corrupted, pair.prompt))
        prompt_ids, image_inputs = self.prompts(rows)
        batch = self.pad(prompt_ids, chosen) | image_inputs
        if weights is not None:
            batch["token_weights"] = place_weights(batch["labels"], weights)
        return batch

    def lengths(self, pairs: Sequence[PreferencePair]) -> list[tuple[int, int, int]]:
        """(prompt, chosen, rejected) token counts per pair, images expanded."""
        prompt_ids, _ = self.prompts([(pair.images, pair.prompt) for pair in pairs])
        return [
            (len(ids), len(self.response(pair.chosen)), len(self.response(pair.rejected)))
            for ids, pair in zip(prompt_ids, pairs)
        ]


def place_weights(labels: torch.Tensor, row_weights: list[torch.Tensor]) -> torch.Tensor:
    """(N, T) weights aligned with `labels`: row i's response tokens (its labelled positions, in order) take
    `row_weights[i]`, every other position 1."""
    response = labels != IGNORE_INDEX
    tokens, given = response.sum(dim=1).tolist(), [len(row_weight) for row_weight in row_weights]
    if tokens != given:
        raise ValueError(f"token weights per row {given} for response tokens per row {tokens}")
    weights = torch.ones(labels.shape, dtype=torch.float32)
    weights[response] = torch.cat(row_weights)  # row-major: each row's response positions in order
    return weights


class SFTCollator(Encoder):
    def __call__(self, examples: list[SFTExample]) -> dict:
        prompt_ids, image_inputs = self.prompts([(example.images, example.prompt) for example in examples])
        batch = self.pad(prompt_ids, [self.response(example.response) for example in examples])
        batch.update(image_inputs)
        return batch


def drop_too_long(
    groups: list[list[PreferencePair]], collator: PreferenceCollator, on_too_long: str, chunk: int = 32
) -> tuple[list[list[PreferencePair]], int]:
    """Remove pairs whose prompt + longer response exceeds the collator's max_length (or fail, naming the
    first one, when on_too_long == 'error'). Returns the surviving groups and the number of pairs dropped."""
    if collator.max_length is None:
        return groups, 0
    rows = [pair for group in groups for pair in group]
    too_long: set[str] = set()
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        for pair, (prompt, chosen, rejected) in zip(part, collator.lengths(part)):
            length = prompt + max(chosen, rejected)
            if length > collator.max_length:
                if on_too_long == "error":
                    raise RecordError(
                        f"pair '{pair.pair_id}': {length} tokens (prompt {prompt} with image tokens) exceed "
                        f"max_length {collator.max_length}; raise max_length or set too_long=drop"
                    )
                too_long.add(pair.pair_id)
    kept = [[pair for pair in group if pair.pair_id not in too_long] for group in groups]
    return [group for group in kept if group], len(too_long)
