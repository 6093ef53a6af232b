"""The published configs (no weights) of the full-size models, as folders a memory plan can read.

``write_wan_flf2v_14b(folder)`` writes the layout of ``Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers`` and
``write_sdxl_base(folder)`` that of ``stabilityai/stable-diffusion-xl-base-1.0``: ``model_index.json``
and each component's ``config.json`` with the published values, plus empty tokenizer and scheduler
folders. Memory plans and pre-flights (``sparkle-motion run --mode dry --gpu``) read them; the weights
are not needed for that. ``bench/gpu.py`` builds the same architectures with random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

WAN_FLF2V_14B = {
    "model_index.json": {
        "_class_name": "WanImageToVideoPipeline", "_diffusers_version": "0.33.0.dev0",
        "image_encoder": ["transformers", "CLIPVisionModel"], "image_processor": ["transformers", "CLIPImageProcessor"],
        "scheduler": ["diffusers", "UniPCMultistepScheduler"], "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"]},
    "transformer/config.json": {
        "_class_name": "WanTransformer3DModel", "_diffusers_version": "0.33.0.dev0", "added_kv_proj_dim": 5120,
        "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-06, "ffn_dim": 13824, "freq_dim": 256,
        "image_dim": 1280, "in_channels": 36, "num_attention_heads": 40, "num_layers": 40, "out_channels": 16,
        "patch_size": [1, 2, 2], "pos_embed_seq_len": 514, "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": 1024, "text_dim": 4096},
    "text_encoder/config.json": {
        "architectures": ["UMT5EncoderModel"], "classifier_dropout": 0.0, "d_ff": 10240, "d_kv": 64,
        "d_model": 4096, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1,
        "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True,
        "is_gated_act": True, "layer_norm_epsilon": 1e-06, "model_type": "umt5", "num_decoder_layers": 24,
        "num_heads": 64, "num_layers": 24, "output_past": True, "pad_token_id": 0,
        "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32, "scalable_attention": True,
        "tie_word_embeddings": False, "tokenizer_class": "T5Tokenizer", "torch_dtype": "float32",
        "use_cache": True, "vocab_size": 256384},
    "image_encoder/config.json": {
        "architectures": ["CLIPVisionModel"], "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "gelu",
        "hidden_size": 1280, "image_size": 224, "initializer_factor": 1.0, "initializer_range": 0.02,
        "intermediate_size": 5120, "layer_norm_eps": 1e-05, "model_type": "clip_vision_model",
        "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 32, "patch_size": 14,
        "projection_dim": 1024, "torch_dtype": "float32"},
    "vae/config.json": {
        "_class_name": "AutoencoderKLWan", "_diffusers_version": "0.33.0.dev0", "attn_scales": [], "base_dim": 96,
        "dim_mult": [1, 2, 4, 4], "dropout": 0.0,
        "latents_mean": [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715,
                         0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
        "latents_std": [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652,
                        1.5579, 1.6382, 1.1253, 2.8251, 1.916],
        "num_res_blocks": 2, "temperal_downsample": [False, True, True], "z_dim": 16},
    "scheduler/scheduler_config.json": {
        "_class_name": "UniPCMultistepScheduler", "flow_shift": 16.0, "num_train_timesteps": 1000,
        "prediction_type": "flow_prediction", "use_flow_sigmas": True},
    "image_processor/preprocessor_config.json": {
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_processor_type": "CLIPImageProcessor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": {"shortest_edge": 224}},
}

SDXL_BASE = {
    "model_index.json": {
        "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0.dev0",
        "force_zeros_for_empty_prompt": True, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]},
    "unet/config.json": {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
        "block_out_channels": [320, 640, 1280], "center_input_sample": False, "cross_attention_dim": 2048,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
        "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
        "layers_per_block": 2, "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05, "norm_num_groups": 32, "only_cross_attention": False, "out_channels": 4,
        "projection_class_embeddings_input_dim": 2816, "resnet_time_scale_shift": "default", "sample_size": 128,
        "time_embedding_type": "positional", "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True},
    "text_encoder/config.json": {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
        "eos_token_id": 2, "hidden_act": "quick_gelu", "hidden_size": 768, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
        "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
        "projection_dim": 768, "torch_dtype": "float16", "vocab_size": 49408},
    "text_encoder_2/config.json": {
        "architectures": ["CLIPTextModelWithProjection"], "attention_dropout": 0.0, "bos_token_id": 0,
        "dropout": 0.0, "eos_token_id": 2, "hidden_act": "gelu", "hidden_size": 1280, "initializer_factor": 1.0,
        "initializer_range": 0.02, "intermediate_size": 5120, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
        "model_type": "clip_text_model", "num_attention_heads": 20, "num_hidden_layers": 32, "pad_token_id": 1,
        "projection_dim": 1280, "torch_dtype": "float16", "vocab_size": 49408},
    "vae/config.json": {
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 4,
        "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024,
        "scaling_factor": 0.13025, "up_block_types": ["UpDecoderBlock2D"] * 4},
    "scheduler/scheduler_config.json": {
        "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "interpolation_type": "linear", "num_train_timesteps": 1000,
        "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading", "use_karras_sigmas": False},
}


def _write(folder: str | Path, files: dict, empty: tuple[str, ...]) -> Path:
    folder = Path(folder)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2))
    for name in empty:
        (folder / name).mkdir(parents=True, exist_ok=True)
    return folder


def write_wan_flf2v_14b(folder: str | Path) -> Path:
    """Wan2.1-FLF2V-14B-720P's pipeline layout and configs, without weights."""
    return _write(folder, WAN_FLF2V_14B, ("tokenizer",))


def write_sdxl_base(folder: str | Path) -> Path:
    """SDXL base 1.0's pipeline layout and configs, without weights."""
    return _write(folder, SDXL_BASE, ("tokenizer", "tokenizer_2"))
