import torch
from PIL import Image

from hadpo.config import load_config
from hadpo.records import ImageRecord, read_jsonl
from hadpo.world.config import WorldConfig
from hadpo.world.data import corpus
from hadpo.world.pretrain import (
    PretrainConfig,
    encode_conversation,
    patch_targets,
    pixel_tensor,
    train_language,
    train_vision,
)
from hadpo.world.scenes import build_world
from hadpo.world.tiny import IMAGE_TOKEN, build_tiny_llava, train_tokenizer

TINY = PretrainConfig(vision_hidden=32, text_hidden=64, text_layers=2, text_intermediate=128, vocab_size=400)


def _setup(tmp_path, **pretrain):
    world = load_config(WorldConfig, None, {"splits": {"pretrain": 64, "pairs": 4, "eval": 4}})
    files = build_world(world, tmp_path)
    images = read_jsonl(files.images("pretrain"), ImageRecord)
    config = TINY.model_copy(update=pretrain)
    tokenizer = train_tokenizer(corpus(images, world), vocab_size=config.vocab_size)
    torch.manual_seed(0)
    model, processor = build_tiny_llava(tokenizer, config.spec(world))
    return world, files, images, config, tokenizer, model, processor


def test_pixels_match_the_processor(tmp_path):
    world, files, images, _, _, _, processor = _setup(tmp_path)
    ours = pixel_tensor(images[:3], files.images("pretrain"))
    pictures = [Image.open(files.root / r.path).convert("RGB") for r in images[:3]]
    theirs = processor.image_processor(pictures, return_tensors="pt")["pixel_values"]
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_conversation_encoding_matches_the_chat_template(tmp_path):
    world, files, images, _, tokenizer, model, processor = _setup(tmp_path)
    turns = [("Is there a star in the image?", "No, there is no star."), ("Is the ring red?", "Yes.")]
    ids, labels = encode_conversation(turns, tokenizer, world.grid**2)
    messages = []
    for turn, (question, answer) in enumerate(turns):
        content = ([{"type": "image"}] if turn == 0 else []) + [{"type": "text", "text": question}]
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    text = processor.apply_chat_template(messages)
    expected = tokenizer(text.replace(IMAGE_TOKEN, IMAGE_TOKEN * world.grid**2), add_special_tokens=False)
    assert ids == expected["input_ids"]
    trained = tokenizer.decode([t for t in labels if t != -100])
    assert trained == " No, there is no star.</s> Yes.</s>"


def test_vision_stage_learns_patches(tmp_path):
    world, files, images, config, _, model, _ = _setup(tmp_path, vision_steps=60, vision_batch=32)
    pixels = pixel_tensor(images, files.images("pretrain"))
    report, _ = train_vision(model, pixels, patch_targets(images, world), world, config)
    # Empty cells are ~70 % of patches: learning must beat predicting "empty" everywhere (per-image accuracy
    # of all three heads together is a much stricter bar, so compare against the trivial all-empty baseline).
    targets = patch_targets(images, world)
    all_empty = (targets == 0).all(-1).float().mean().item()
    assert report["patch_accuracy"] > all_empty


def test_a_few_language_steps_lower_the_loss(tmp_path):
    world, files, images, config, tokenizer, model, _ = _setup(
        tmp_path, lm_steps=30, lm_batch=8, warmup_steps=5, lm_lr=3e-3, qa_turns=2
    )
    pixels = pixel_tensor(images, files.images("pretrain"))
    losses = train_language(model, tokenizer, images, pixels, world, config)["lm_losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())


def test_aligned_projector_maps_the_read_out_to_word_embeddings(tmp_path):
    from torch import nn

    from hadpo.world.pretrain import align_projector

    world, files, images, _, tokenizer, model, _ = _setup(tmp_path)
    pixels = pixel_tensor(images[:4], files.images("pretrain"))
    hidden = model.model.vision_tower.config.hidden_size
    winners = {"categories": 3, "colours": 2, "sizes": 1}  # class indices (0 = empty) every patch will get
    heads = nn.ModuleList()
    for words, winner in zip((world.categories, world.colours, world.sizes), winners.values()):
        head = nn.Linear(hidden, len(words) + 1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        head.bias.data[winner] = 10.0  # every patch: logit 10 for the winner, 0 for the rest
        heads.append(head)
    align_projector(model, heads, pixels, tokenizer, world)
    with torch.no_grad():
        projected = model.model.get_image_features(pixel_values=pixels[:1]).pooler_output[0][0]
    embeddings = model.get_input_embeddings().weight
    words = [world.categories[2], world.colours[1], world.sizes[0]]
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in words]
    expected = sum(embeddings[i].mean(0) for i in ids)
    # GELU(10) / 10 = 1: the patch enters the language model as the sum of its three names' embeddings.
    assert torch.allclose(projected, expected, atol=1e-5)
