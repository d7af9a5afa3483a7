"""MiniGPT-4 (Zhu et al., arXiv 2304.10592) as a transformers model: `MiniGPT4Config` and
`MiniGPT4ForConditionalGeneration`, registered with the Auto classes by `hadpo.models.minigpt4`.

The architecture of the public release (Vision-CAIR/MiniGPT-4, `minigpt4/models/minigpt4.py`), built from
transformers' own parts:

- `vision_model`: EVA ViT-g/14 (39 blocks, width 1408, q/v biases) followed by its layer norm (`ln_vision` in the
  release), which is exactly transformers' BLIP-2 vision model (`Blip2VisionModel`, whose `post_layernorm` plays
  `ln_vision`);
- Vicuna variant: BLIP-2's Q-Former (`qformer`, `Blip2QFormerModel` without its text branch) reads the patch
  features through 32 learned queries (`query_tokens`); Llama-2 variant: no Q-Former, the CLS feature is dropped
  and every 4 adjacent patch features are concatenated (256 patches of width 1408 -> 64 tokens of width 5632);
- `language_projection`: the single linear layer MiniGPT-4 trains (`llama_proj` in the release);
- `language_model`: a causal LM (`LlamaForCausalLM` for Vicuna / Llama-2-chat).

The processor expands the prompt's `<ImageHere>` placeholder into `num_image_tokens` image tokens; the forward pass
writes the projected image features over their embeddings, as LLaVA does in transformers. The image token needs no
row in the language model's embedding table (the release's Vicuna is used unchanged): its id is masked before the
lookup.
"""

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    Blip2QFormerConfig,
    Blip2QFormerModel,
    Blip2VisionConfig,
    Blip2VisionModel,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto import AutoConfig

VARIANTS = ("vicuna", "llama2")


class MiniGPT4Config(PreTrainedConfig):
    """A MiniGPT-4: vision config (EVA ViT-g by default), optional Q-Former config (present: the Vicuna variant;
    None: the Llama-2 variant, which concatenates `patches_per_token` adjacent patches instead) and the language
    model's config."""

    model_type = "minigpt4"
    attribute_map = {"image_token_id": "image_token_index"}
    sub_configs_defaults = {
        "vision_config": Blip2VisionConfig,
        "qformer_config": SubConfigSpec(config_class=Blip2QFormerConfig, optional=True),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    qformer_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    num_query_tokens: int = 32
    patches_per_token: int = 4
    image_token_index: int | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.qformer_config is not None:
            self.qformer_config.encoder_hidden_size = self.vision_config.hidden_size
        patches = (self.vision_config.image_size // self.vision_config.patch_size) ** 2
        if self.qformer_config is None and patches % self.patches_per_token:
            raise ValueError(
                f"MiniGPT4Config: {patches} patches do not split into groups of patches_per_token "
                f"{self.patches_per_token}"
            )

    @property
    def variant(self) -> str:
        return "vicuna" if self.qformer_config is not None else "llama2"

    @property
    def num_image_tokens(self) -> int:
        """Language-model positions one image fills: the queries, or the patch groups."""
        if self.qformer_config is not None:
            return self.num_query_tokens
        patches = (self.vision_config.image_size // self.vision_config.patch_size) ** 2
        return patches // self.patches_per_token

    @property
    def image_feature_size(self) -> int:
        """Width of what `language_projection` reads."""
        if self.qformer_config is not None:
            return self.qformer_config.hidden_size
        return self.vision_config.hidden_size * self.patches_per_token


class MiniGPT4PreTrainedModel(PreTrainedModel):
    # transformers reads the config class from this annotation, so this module keeps annotations evaluated.
    config: MiniGPT4Config
    base_model_prefix = "minigpt4"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False  # the Q-Former does not support it (as in BLIP-2)
    _supports_attention_backend = True
    # As in BLIP-2: the Q-Former and its queries stay in float32 when the rest is loaded in half precision.
    _keep_in_fp32_modules = ["query_tokens", "qformer"]
    _no_split_modules = ["Blip2Attention", "Blip2EncoderLayer", "Blip2QFormerLayer", "LlamaDecoderLayer"]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MiniGPT4ForConditionalGeneration) and module.query_tokens is not None:
            # The release draws the queries from N(0, initializer_range), as BERT initialises embeddings.
            init.normal_(module.query_tokens, mean=0.0, std=self.config.initializer_range)


class MiniGPT4ForConditionalGeneration(MiniGPT4PreTrainedModel, GenerationMixin):
    def __init__(self, config: MiniGPT4Config):
        super().__init__(config)
        self.vision_model = Blip2VisionModel._from_config(config.vision_config)
        if config.qformer_config is not None:
            self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, config.qformer_config.hidden_size))
            self.qformer = Blip2QFormerModel._from_config(config.qformer_config)
        else:
            self.query_tokens = None
            self.qformer = None
        self.language_projection = nn.Linear(config.image_feature_size, config.text_config.hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_decoder(self):
        return self.language_model.get_decoder()

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, num_image_tokens, LM width) features (the release's `encode_img`)."""
        patch_features = self.vision_model(pixel_values=pixel_values).last_hidden_state  # (B, 1 + P, D), normed
        if self.qformer is not None:
            queries = self.query_tokens.expand(patch_features.shape[0], -1, -1)
            image_mask = torch.ones(patch_features.shape[:-1], dtype=torch.long, device=patch_features.device)
            features = self.qformer(
                query_embeds=queries, encoder_hidden_states=patch_features, encoder_attention_mask=image_mask
            ).last_hidden_state  # (B, Q, D_qformer)
        else:
            patches = patch_features[:, 1:, :]  # the CLS feature is dropped
            batch, count, width = patches.shape
            features = patches.reshape(
                batch, count // self.config.patches_per_token, width * self.config.patches_per_token
            )
        features = features.to(self.language_projection.weight.dtype)
        return self.language_projection(features)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ):
        if inputs_embeds is None:
            image_positions = input_ids == self.config.image_token_index
            inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(image_positions, 0))
            if pixel_values is not None:
                features = self.get_image_features(pixel_values)  # (B, N, width)
                if int(image_positions.sum()) != features.shape[0] * features.shape[1]:
                    raise ValueError(
                        f"MiniGPT-4: the text holds {int(image_positions.sum())} image tokens, the images give "
                        f"{features.shape[0]} x {features.shape[1]} features"
                    )
                inputs_embeds = inputs_embeds.masked_scatter(
                    image_positions.unsqueeze(-1).to(inputs_embeds.device), features.to(inputs_embeds.dtype)
                )
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
