"""Every supported family (and language model) on a tiny random model: LoRA targets, collated inputs the model
accepts, a few DPO steps that lower the loss and raise reward accuracy, a save / load roundtrip, and what
training freezes."""

import pytest
import torch
from peft import PeftModel
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText

from hadpo.config import load_config
from hadpo.models import decoder_start_token_id, get_family
from hadpo.train.config import HADPOConfig
from hadpo.train.data import PreferenceCollator, load_pairs
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
    wrapped = {
        n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")
    }
    # 2 layers x all 7 linear layers (LLaVA, Qwen: the release's all-linear LoRA), x q, k, v (InstructBLIP-
    # Llama, MiniGPT-4), and FlanT5's q, k, v in 2 encoder + 2 decoder blocks (self- and cross-attention).
    expected = {"instructblip_llama": 6, "instructblip_t5": 18, "minigpt4_vicuna": 6, "minigpt4_llama2": 6}
    assert wrapped == targets and len(targets) == expected.get(family_model.case, 14)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_collated_batch_matches_the_processor(family_model, family_pairs):
    family = family_model.family
    processor = family.load_processor(str(family_model.folder))
    decoder_start = decoder_start_token_id(AutoConfig.from_pretrained(family_model.folder))
    pair = load_pairs(family_pairs)[2]  # the 64x40 image
    batch = PreferenceCollator(processor, family, decoder_start_token_id=decoder_start)([{"pair": pair}])
    prompt = family.prompt_text(processor, pair.prompt, 1)
    direct = processor(images=[Image.open(pair.images[0])], text=[prompt], return_tensors="pt")
    n = direct["input_ids"].shape[1]
    assert torch.equal(batch["input_ids"][0, :n], direct["input_ids"][0])
    for key in family.image_keys:
        assert torch.equal(batch[key], torch.cat([direct[key]] * 2)), key
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
