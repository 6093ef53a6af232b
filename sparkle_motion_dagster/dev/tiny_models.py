"""Tiny random-initialised diffusers pipelines, built offline, for tests and dry runs.

Each builder assembles a real diffusers pipeline (the same classes the model
adapters load: ``StableDiffusionXLPipeline`` and ``WanImageToVideoPipeline``)
with a few million random parameters and a hand-made tokenizer, then writes it
with ``save_pretrained`` in diffusers format. The folders load with
``from_pretrained(folder)`` exactly like downloaded weights, so the adapters'
own loading, validation and generation code runs end to end without a network
or a GPU. The pictures are noise; the shapes, dtypes and control flow are real.

Building is seeded (``torch.manual_seed`` before every component), so the same
torch version writes the same weights. Nothing is downloaded: the CLIP
tokenizer is a byte-level BPE vocabulary written here, the UMT5 tokenizer a
small unigram vocabulary.

Architectural rules the tiny configs must keep (measured, see the notes):

* SDXL: the UNet's ``cross_attention_dim`` is the sum of both text encoders'
  hidden sizes, and ``projection_class_embeddings_input_dim`` is
  6 x ``addition_time_embed_dim`` + text encoder 2's ``projection_dim``.
* Wan 2.1: the VAE really compresses 8x in space and 4x in time (the pipeline
  assumes it); the transformer's ``in_channels`` is 16 noise + 4 mask + 16
  condition latents, ``text_dim`` the UMT5 ``d_model``, ``image_dim`` the CLIP
  vision hidden size; a first-last-frame transformer has ``pos_embed_seq_len``
  = 2 x image tokens (both frames' CLIP tokens side by side).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

SEED = 0

# Wan's CLIP vision tower at 32x32 pixels with 8x8 patches: 16 patches + the class token.
WAN_IMAGE_SIZE = 32
WAN_PATCH_SIZE = 8
WAN_IMAGE_TOKENS = (WAN_IMAGE_SIZE // WAN_PATCH_SIZE) ** 2 + 1

_WORDS = ("the", "and", "a", "of", "in", "on", "with", "light", "city", "night", "rain", "face", "slow", "camera")


# --------------------------------------------------------------------------- tokenizers


def _byte_level_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2/CLIP convention)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codepoints = printable[:]
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + shifted)
            shifted += 1
    return [chr(c) for c in codepoints]


def build_clip_tokenizer(directory: Path):
    """A byte-level BPE CLIP tokenizer with a toy vocabulary, written to and loaded from ``directory``."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_level_alphabet()
    vocab: dict[str, int] = {}
    for symbol in alphabet + [a + "</w>" for a in alphabet]:
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # Merge each word left to right, the last step carrying the end-of-word marker.
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            merges.append((left, right))
            vocab.setdefault(left + right, len(vocab))
            pieces = [left + right] + pieces[2:]
    merges = list(dict.fromkeys(merges))
    vocab.setdefault("<|startoftext|>", len(vocab))
    vocab.setdefault("<|endoftext|>", len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(directory), model_max_length=77)


def build_umt5_tokenizer():
    """A unigram tokenizer with UMT5's fixed first ids (pad 0, eos 1, unk 2) and a toy vocabulary."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{word}", -3.0) for word in _WORDS]
    pieces += [(ch, -5.0) for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


# --------------------------------------------------------------------------- SDXL


def tiny_sdxl_pipeline():
    """A StableDiffusionXLPipeline of about 2 M random parameters (64x64 images in a fraction of a second)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_clip_tokenizer(Path(scratch))
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=5, max_position_embeddings=77, hidden_act="gelu", projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    time_embed_dim = 8
    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(
        sample_size=32, block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + text_config.projection_dim,
        cross_attention_dim=2 * text_config.hidden_size, norm_num_groups=32,
    )
    torch.manual_seed(SEED)
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, sample_size=128,
    )
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(SEED)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )


def build_tiny_sdxl(directory: str | Path) -> Path:
    """Write a tiny random SDXL pipeline to ``directory`` (diffusers format) and return the folder."""
    directory = Path(directory)
    tiny_sdxl_pipeline().save_pretrained(str(directory))
    return directory


def build_tiny_ip_adapter(directory: str | Path, unet) -> Path:
    """Write a tiny random IP-Adapter for ``unet`` (a tiny SDXL's) in the layout ``load_ip_adapter``
    reads: ``sdxl_models/ip-adapter_tiny.safetensors`` (the image projection and, for each
    cross-attention layer in order, ``to_k_ip``/``to_v_ip``) beside a tiny CLIP image encoder in
    ``sdxl_models/image_encoder``. Returns the adapter's root folder."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(directory) / "sdxl_models"
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, projection_dim=16, num_hidden_layers=2,
                              num_attention_heads=2, image_size=32, patch_size=8)
    torch.manual_seed(SEED)
    CLIPVisionModelWithProjection(vision).save_pretrained(str(folder / "image_encoder"))
    cross, tokens = unet.config.cross_attention_dim, 4
    generator = torch.Generator().manual_seed(SEED)
    tensors = {"image_proj.proj.weight": torch.randn(tokens * cross, vision.projection_dim, generator=generator),
               "image_proj.proj.bias": torch.zeros(tokens * cross),
               "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    channels = unet.config.block_out_channels
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(channels))[int(name[len("up_blocks.")])]
        else:
            hidden = channels[int(name[len("down_blocks.")])]
        for kind in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{key_id}.{kind}.weight"] = torch.randn(hidden, cross, generator=generator) * 0.5
        key_id += 2
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "ip-adapter_tiny.safetensors"))
    return Path(directory)


# --------------------------------------------------------------------------- Wan 2.1


def tiny_wan_pipeline(*, first_last_frame: bool):
    """A WanImageToVideoPipeline with tiny random components.

    ``first_last_frame=True`` gives the transformer a ``pos_embed_seq_len`` of
    2 x image tokens, the Wan 2.1 FLF2V layout that accepts ``last_image=``.
    """
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    tokenizer = build_umt5_tokenizer()
    torch.manual_seed(SEED)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))
    torch.manual_seed(SEED)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    vision_config = CLIPVisionConfig(hidden_size=16, intermediate_size=32, projection_dim=16, num_hidden_layers=2,
                                     num_attention_heads=2, image_size=WAN_IMAGE_SIZE, patch_size=WAN_PATCH_SIZE)
    torch.manual_seed(SEED)
    image_encoder = CLIPVisionModel(vision_config)
    image_processor = CLIPImageProcessor(crop_size=WAN_IMAGE_SIZE, size={"shortest_edge": WAN_IMAGE_SIZE})
    torch.manual_seed(SEED)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16 + 4 + 16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, image_dim=vision_config.hidden_size, added_kv_proj_dim=24,
        pos_embed_seq_len=2 * WAN_IMAGE_TOKENS if first_last_frame else None,
    )
    # The real Wan 2.1 scheduler: UniPC over flow-matching sigmas (flow_shift 3.0 for 480p).
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
        image_processor=image_processor, image_encoder=image_encoder, transformer=transformer,
    )


def build_tiny_wan(directory: str | Path, first_last_frame: bool) -> Path:
    """Write a tiny random Wan 2.1 image-to-video pipeline (FLF2V layout when asked) to ``directory``."""
    directory = Path(directory)
    tiny_wan_pipeline(first_last_frame=first_last_frame).save_pretrained(str(directory))
    return directory


# --------------------------------------------------------------------------- Wan 2.2 A14B and LoRAs


def build_tiny_lora(model_folder: str | Path, out_folder: str | Path, seed: int = 1) -> Path:
    """A rank-2 LoRA (peft, random weights) on a tiny Wan transformer's attention projections, written in
    diffusers format (``save_lora_weights``); returns the ``.safetensors`` file. Needs ``peft``."""
    import torch
    from diffusers import WanImageToVideoPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = WanImageToVideoPipeline.from_pretrained(str(model_folder)).transformer
    torch.manual_seed(seed)
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    WanImageToVideoPipeline.save_lora_weights(str(out_folder), transformer_lora_layers=get_peft_model_state_dict(
        transformer))
    return Path(out_folder) / "pytorch_lora_weights.safetensors"


def build_tiny_a14b(directory: str | Path) -> Path:
    """Write a Wan 2.2 A14B-shaped pipeline: two transformers (high- and low-noise experts, no CLIP image
    tokens) switched at a boundary ratio."""
    import torch
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel

    base = tiny_wan_pipeline(first_last_frame=False)
    experts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        experts.append(WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
            text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32))
    pipe = WanImageToVideoPipeline(tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                                   scheduler=base.scheduler, transformer=experts[0], transformer_2=experts[1],
                                   boundary_ratio=0.875)
    pipe.save_pretrained(str(directory))
    return Path(directory)


# --------------------------------------------------------------------------- all


def build_all(directory: str | Path) -> dict[str, Path]:
    """Build every tiny model under ``directory``: ``sdxl``, ``wan-i2v``, ``wan-flf2v``, ``vits``
    (speech) and ``wav2lip`` (a checkpoint file)."""
    from sparkle_motion_dagster.resources.lipsync.wav2lip_model import save_random_checkpoint
    from sparkle_motion_dagster.resources.speech.vits import build_tiny_vits

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    return {
        "sdxl": build_tiny_sdxl(root / "sdxl"),
        "wan-i2v": build_tiny_wan(root / "wan-i2v", first_last_frame=False),
        "wan-flf2v": build_tiny_wan(root / "wan-flf2v", first_last_frame=True),
        "vits": build_tiny_vits(root / "vits"),
        "wav2lip": Path(save_random_checkpoint(root / "wav2lip" / "wav2lip_tiny.pth", seed=0)),
    }
