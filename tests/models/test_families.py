"""Every supported family (and language model) on a tiny random model: LoRA targets, collated inputs the model
accepts, a few DPO steps that lower the loss and raise reward accuracy, a save / load roundtrip, and what
training freezes."""

import pytest
import torch
from peft import PeftModel
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText

from hadpo.config import load_config
from hadpo.inference import answer_token_ids
from hadpo.inference.image_prefix import prefix_answer_log_probs, split_prefix
from hadpo.inference.packing import packing_unsupported
from hadpo.models import decoder_start_token_id, get_family
from hadpo.train.collate import PreferenceCollator
from hadpo.train.config import HADPOConfig
from hadpo.train.data import load_pairs
from hadpo.train.logps import response_logps
from hadpo.train.run import build_trainer, prepare_policy, save_outputs


def _config(folder, pairs, out, **overrides):
    values = dict(
        model_name_or_path=str(folder),
        pairs=str(pairs),
        output_dir=str(out),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        per_device_train_batch_size=3,
        per_device_eval_batch_size=6,
        learning_rate=3e-2,
        lora_r=8,
        lora_alpha=16,
        max_steps=6,
        seed=0,
        disable_tqdm=True,
        beta=0.5,
    )
    return load_config(HADPOConfig, None, values, overrides)


def test_families_are_found_by_model_type():
    assert get_family("auto", "llava").name == "llava15"
    assert get_family("auto", "qwen2_5_vl").name == "qwen2_vl"
    assert get_family("auto", "instructblip").name == "instructblip"
    assert get_family("auto", "minigpt4").name == "minigpt4"
    with pytest.raises(ValueError, match="no hadpo adapter for model_type 'blip-2'"):
        get_family("auto", "blip-2")


def test_lora_targets_the_familys_language_model_layers_and_nothing_else(family_model, family_pairs, tmp_path):
    family = family_model.family
    config = _config(family_model.folder, family_pairs, tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(family_model.folder)
    targets = {
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and n.startswith(family.language_model_prefix + ".")
        and n.rsplit(".", 1)[-1] in family.lora_names
    }
    peft_model = prepare_policy(model, config, family)
    wrapped = {n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    # 2 layers x all 7 linear layers (LLaVA, Qwen: the release's all-linear LoRA), x q, k, v (InstructBLIP-
    # Llama, MiniGPT-4), and FlanT5's q, k, v in 2 encoder + 2 decoder blocks (self- and cross-attention).
    expected = {"instructblip_llama": 6, "instructblip_t5": 18, "minigpt4_vicuna": 6, "minigpt4_llama2": 6}
    assert wrapped == targets and len(targets) == expected.get(family_model.case, 14)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_collated_batch_matches_the_processor(family_model, family_pairs, shared_prefix):
    family = family_model.family
    processor = family.load_processor(str(family_model.folder))
    decoder_start = decoder_start_token_id(AutoConfig.from_pretrained(family_model.folder))
    pair = load_pairs(family_pairs)[2]  # the 64x40 image
    collator = PreferenceCollator(processor, family, decoder_start_token_id=decoder_start, shared_prefix=shared_prefix)
    batch = collator([{"pair": pair}])
    prompt = family.prompt_text(processor, pair.prompt, 1)
    direct = processor(images=[Image.open(pair.images[0])], text=[prompt], return_tensors="pt")
    n = direct["input_ids"].shape[1]
    assert torch.equal(batch["input_ids"][0, :n], direct["input_ids"][0])
    copies = 1 if collator.shared_prefix else 2  # a packed pair encodes its image once
    for key in family.image_keys:
        assert torch.equal(batch[key], torch.cat([direct[key]] * copies)), key
    if family.mm_token_types:
        assert torch.equal(batch["mm_token_type_ids"][0, :n], direct["mm_token_type_ids"][0].long())
    chosen = processor.tokenizer(family.response_text(processor, pair.chosen), add_special_tokens=False)["input_ids"]
    if decoder_start is None:  # the response follows the prompt; only its tokens are labels
        assert (batch["labels"][:, :n] == -100).all()
        assert batch["labels"][0, n : n + len(chosen)].tolist() == chosen
    else:  # encoder-decoder: the prompt is the encoder's, the response the decoder's after its start token
        assert batch["decoder_input_ids"][0, : len(chosen) + 1].tolist() == [decoder_start, *chosen]
        assert batch["labels"][0, : len(chosen) + 1].tolist() == [-100, *chosen]


def test_dpo_steps_lower_the_loss_and_raise_accuracy_then_save_and_load(family_model, family_pairs, tmp_path):
    folder = family_model.folder
    assert AutoConfig.from_pretrained(folder).model_type in family_model.family.model_types
    trainer = build_trainer(_config(folder, family_pairs, tmp_path / "run"))
    before = trainer.evaluate(trainer.train_dataset)
    trainer.train()
    after = trainer.evaluate(trainer.train_dataset)
    assert before["eval_loss"] == pytest.approx(0.693147, abs=1e-4) and before["eval_rewards/accuracies"] == 0
    assert after["eval_loss"] < before["eval_loss"] - 0.05
    assert after["eval_rewards/accuracies"] > 0.5

    save_outputs(trainer)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(2)]))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    trainer.model.eval()
    with torch.no_grad():
        trained = trainer.model(**inputs).logits
        base = AutoModelForImageTextToText.from_pretrained(folder)
        loaded = PeftModel.from_pretrained(base, tmp_path / "run").eval()(**inputs).logits
    assert torch.allclose(trained, loaded, atol=1e-5)


def test_a_lora_target_reaching_into_the_vision_tower_is_refused(family_model, family_pairs, tmp_path):
    config = _config(family_model.folder, family_pairs, tmp_path, lora_target=r".*\.(q_proj|k_proj|v_proj|qkv|query)")
    with pytest.raises(ValueError, match="'lora_target' matches vision modules"):
        prepare_policy(AutoModelForImageTextToText.from_pretrained(family_model.folder), config, family_model.family)


def test_full_finetuning_trains_the_language_model_and_freezes_vision_and_projector(
    family_model, family_pairs, tmp_path
):
    family = family_model.family
    config = _config(family_model.folder, family_pairs, tmp_path, finetuning="full", reference="copy")
    model = prepare_policy(AutoModelForImageTextToText.from_pretrained(family_model.folder), config, family)
    for param_name, param in model.named_parameters():
        vision = family.is_vision_tower(param_name) or family.is_projector(param_name)
        assert param.requires_grad != vision, param_name
    assert any(p.requires_grad and family.language_model_prefix in n for n, p in model.named_parameters())


def test_shared_prefix_gives_the_log_probs_and_gradients_of_two_sequences(family_model, family_pairs):
    """The issue-13 criterion on every family, fp32, LoRA moved off its initialisation so the gradients are
    not trivially those of the base: log-probs within 1e-5 per token, gradient relative difference <= 1e-4; and the
    token-weighted log-probs of dense DPO (issue 19) equal too."""
    family, folder = family_model.family, family_model.folder
    processor = family.load_processor(str(folder))
    model = AutoModelForImageTextToText.from_pretrained(folder)
    if decoder_start_token_id(model.config) is not None:  # FlanT5: the prompt is the encoder's, nothing to pack
        assert packing_unsupported(model).startswith("its language model is an encoder-decoder")
        return
    assert packing_unsupported(model) is None
    policy = prepare_policy(model, _config(folder, family_pairs, "unused"), family)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param_name, param in policy.named_parameters():
            if "lora_B" in param_name:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    examples = [{"pair": pair} for pair in load_pairs(family_pairs)[1:5]]  # three image sizes, both kinds
    weights = torch.linspace(-1.0, 1.5, 2 * len(examples))
    results = []
    for shared_prefix in (True, False):
        batch = PreferenceCollator(processor, family, shared_prefix=shared_prefix, token_weighting="diff")(examples)
        policy.zero_grad()
        out = response_logps(policy, batch)
        (out.sums * weights).sum().backward()
        results.append((out, torch.cat([p.grad.flatten() for p in policy.parameters() if p.requires_grad])))
    (shared, shared_grads), (plain, plain_grads) = results
    assert shared.counts.tolist() == plain.counts.tolist()
    # Within 1e-5 per token (a sum of ~100 in fp32 is itself only exact to ~1e-5).
    per_token = (shared.sums - plain.sums).abs() / plain.counts
    assert (per_token <= 1e-5).all(), per_token.max()
    # dense DPO's token weights reach the same tokens in both layouts (RLHF-V's diff marks the differing ones)
    assert shared.weighted_counts.tolist() == plain.weighted_counts.tolist()
    assert (shared.weighted_counts > plain.counts).all()  # every pair here has tokens that differ
    assert ((shared.weighted_sums - plain.weighted_sums).abs() / plain.weighted_counts <= 1e-5).all()
    assert ((shared_grads - plain_grads).norm() / plain_grads.norm()).item() <= 1e-4
    assert plain_grads.norm() > 0


def test_yes_no_answers_from_one_image_prefix_equal_whole_prompts(family_model, family_pairs):
    """Issue 13's shared image prefix for yes/no questions: each image read once, its questions continued from
    the cache, equals scoring every (prompt + answer) whole, multi-token answers included (these tiny
    vocabularies split " yes"); InstructBLIP, whose image encoding reads the question, is answered whole."""
    family, folder = family_model.family, family_model.folder
    processor = family.load_processor(str(folder))
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    folder_of_images = family_pairs.parent
    images = [Image.open(folder_of_images / f"{i}.png").convert("RGB") for i in (1, 2)]  # two sizes
    questions = ["Is there a dog in the image?", "Is there a red square in the image?", "Is there a cup?"]
    texts = [family.prompt_text(processor, question, 1) for question in questions]
    prefixes = [split_prefix(processor, image, texts) for image in images]
    if family.name == "instructblip":
        assert prefixes == [None, None]
        return
    sequences = answer_token_ids(processor, ["yes", "no", "Yes"])
    assert max(len(s) for s in sequences) > 1
    shared = prefix_answer_log_probs(model, prefixes, sequences)
    whole = torch.tensor(
        [[_whole_log_prob(model, processor, image, text, s) for s in sequences] for image in images for text in texts]
    )
    assert torch.allclose(shared, whole, atol=1e-4), (shared - whole).abs().max()


def _whole_log_prob(model, processor, image, text, sequence):
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    start = inputs["input_ids"].shape[1]
    answer = torch.tensor([sequence])
    inputs["input_ids"] = torch.cat([inputs["input_ids"], answer], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(answer)], dim=1)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(**inputs).logits[0].float(), dim=-1)
    return sum(log_probs[start - 1 + k, token].item() for k, token in enumerate(sequence))
