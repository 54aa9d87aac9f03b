#!/usr/bin/env python3
"""Tiny random Qwen-Image components in the real diffusers / transformers layout.

`python3 tools/reference/tiny_models.py` (re)builds models/tiny-qwen-image/, a complete
QwenImagePipeline saved with `save_pretrained`, and checks that it reloads and generates.

The builders here are also used by make_goldens.py for the per-component golden folders.
Everything is CPU float32 and deterministic: every builder takes a seed and re-initialises
all parameters from a private torch.Generator (see common.reinit_params).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (SHARED_TOKENIZER_DIR, TINY_PIPELINE_DIR, dir_size, reinit_params,  # noqa: E402
                    setup_determinism)

# ---------------------------------------------------------------------------------------------
# Scheduler: the published Qwen-Image scheduler/scheduler_config.json, verbatim.
# ---------------------------------------------------------------------------------------------
QWEN_IMAGE_SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}


def build_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(QWEN_IMAGE_SCHEDULER_CONFIG)


# ---------------------------------------------------------------------------------------------
# Tokenizer: the real Qwen2 byte-level BPE (shared/qwen-tokenizer), trimmed to Qwen2.5-VL's added tokens.
# ---------------------------------------------------------------------------------------------
# Qwen2.5-VL (Qwen-Image's text encoder) has added tokens 151643..151664. The shared tokenizer.json comes
# from a Qwen3 package and also carries 151665..151668 (<tool_response>, </tool_response>, <think>,
# </think>); they are dropped so the tiny pipeline's tokenizer is Qwen-Image's.
QWEN25VL_LAST_ADDED_ID = 151664


def build_tokenizer(shared_dir: Path = SHARED_TOKENIZER_DIR):
    """A transformers Qwen2Tokenizer (tokenizers backend) from the shared tokenizer.json + config."""
    from transformers import Qwen2TokenizerFast

    with open(shared_dir / "tokenizer.json", encoding="utf-8") as f:
        tj = json.load(f)
    with open(shared_dir / "tokenizer_config.json", encoding="utf-8") as f:
        tc = json.load(f)
    tj["added_tokens"] = [t for t in tj["added_tokens"] if t["id"] <= QWEN25VL_LAST_ADDED_ID]
    tc["added_tokens_decoder"] = {k: v for k, v in tc["added_tokens_decoder"].items()
                                  if int(k) <= QWEN25VL_LAST_ADDED_ID}
    # The shared config's chat template is Qwen3's (thinking); Qwen-Image never applies a chat template
    # (the pipeline formats its own prompt template), so none is shipped.
    tc.pop("chat_template", None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with open(tmp / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(tj, f, indent=2, ensure_ascii=False)
        with open(tmp / "tokenizer_config.json", "w", encoding="utf-8") as f:
            json.dump(tc, f, indent=2, ensure_ascii=False)
        tok = Qwen2TokenizerFast.from_pretrained(str(tmp))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>", (tok.eos_token, tok.pad_token)
    assert tok.convert_tokens_to_ids("<|im_start|>") == 151644
    assert len(tok) == QWEN25VL_LAST_ADDED_ID + 1, len(tok)
    return tok


# ---------------------------------------------------------------------------------------------
# Text encoder: Qwen2_5_VLForConditionalGeneration
# ---------------------------------------------------------------------------------------------
def text_encoder_config(vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, num_kv_heads: int,
                        intermediate_size: int, mrope_section: list[int], tie_word_embeddings: bool,
                        vision_depth: int = 2, vision_hidden: int = 16, vision_heads: int = 2,
                        vision_intermediate: int = 32):
    from transformers import Qwen2_5_VLConfig

    head_dim = hidden_size // num_heads
    assert head_dim * num_heads == hidden_size
    assert sum(mrope_section) * 2 == head_dim, (mrope_section, head_dim)
    text = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        hidden_act="silu",
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": list(mrope_section)},
        use_sliding_window=False,
        sliding_window=32768,
        max_window_layers=28,
        attention_dropout=0.0,
        bos_token_id=151643,
        eos_token_id=151645,
        tie_word_embeddings=tie_word_embeddings,
    )
    vision = dict(
        depth=vision_depth,
        hidden_size=vision_hidden,
        intermediate_size=vision_intermediate,
        num_heads=vision_heads,
        out_hidden_size=hidden_size,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        tokens_per_second=2,
        window_size=112,
        fullatt_block_indexes=[vision_depth - 1],
        hidden_act="silu",
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tie_word_embeddings,
                            image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                            vision_end_token_id=151653)


def build_text_encoder(config, seed: int):
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    # Embedding N(0, 1): RMSNorm makes the scale irrelevant and unit rows keep the bf16 rounding relative.
    reinit_params(model, seed=seed, gain=1.0, bias_std=0.05, embedding_std=1.0)
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    return model


def round_embeddings_to_bf16(model) -> None:
    """Round the input embedding (and an untied lm_head) to bf16 values, kept in float32 in memory."""
    with torch.no_grad():
        emb = model.model.language_model.embed_tokens.weight
        emb.copy_(emb.to(torch.bfloat16).to(torch.float32))
        if not model.config.tie_word_embeddings:
            lm = model.lm_head.weight
            lm.copy_(lm.to(torch.bfloat16).to(torch.float32))


class bf16_embeddings_for_saving:
    """Context manager: store embed_tokens (+ untied lm_head) as bfloat16 while saving, float32 otherwise."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        m = self.model
        m.model.language_model.embed_tokens.weight.data = m.model.language_model.embed_tokens.weight.data.to(
            torch.bfloat16)
        if not m.config.tie_word_embeddings:
            m.lm_head.weight.data = m.lm_head.weight.data.to(torch.bfloat16)
        return m

    def __exit__(self, *exc):
        m = self.model
        m.model.language_model.embed_tokens.weight.data = m.model.language_model.embed_tokens.weight.data.to(
            torch.float32)
        if not m.config.tie_word_embeddings:
            m.lm_head.weight.data = m.lm_head.weight.data.to(torch.float32)
        return False


# ---------------------------------------------------------------------------------------------
# Transformer (MMDiT): QwenImageTransformer2DModel
# ---------------------------------------------------------------------------------------------
def build_transformer(seed: int, num_attention_heads: int = 2, attention_head_dim: int = 16,
                      axes_dims_rope=(4, 6, 6), joint_attention_dim: int = 32, num_layers: int = 2,
                      zero_cond_t: bool = False, in_channels: int = 64, out_channels: int = 16,
                      patch_size: int = 2):
    from diffusers import QwenImageTransformer2DModel

    assert sum(axes_dims_rope) == attention_head_dim
    torch.manual_seed(seed)
    kwargs = dict(patch_size=patch_size, in_channels=in_channels, out_channels=out_channels, num_layers=num_layers,
                  attention_head_dim=attention_head_dim, num_attention_heads=num_attention_heads,
                  joint_attention_dim=joint_attention_dim, guidance_embeds=False,
                  axes_dims_rope=tuple(axes_dims_rope))
    if zero_cond_t:
        kwargs["zero_cond_t"] = True
    model = QwenImageTransformer2DModel(**kwargs).to(torch.float32).eval()
    # Gain 1 everywhere keeps every stream O(1); the default init zeroes nothing we rely on, but a
    # full re-init guarantees no parameter is trivially 0 or 1.
    reinit_params(model, seed=seed, gain=1.0, bias_std=0.05)
    return model


# ---------------------------------------------------------------------------------------------
# VAE: AutoencoderKLQwenImage (Wan-2.1-style causal 3D VAE)
# ---------------------------------------------------------------------------------------------
TINY_VAE_KWARGS = dict(
    base_dim=4,                                   # real: 96
    z_dim=16,                                     # real latent space
    dim_mult=[1, 2, 4, 4],                        # real
    num_res_blocks=2,                             # real
    attn_scales=[],                               # real
    temperal_downsample=[False, True, True],      # real (sic: "temperal")
    dropout=0.0,
    # latents_mean / latents_std: the class defaults, which are Qwen-Image's published values.
)


def build_vae(seed: int, **overrides):
    from diffusers import AutoencoderKLQwenImage

    kw = dict(TINY_VAE_KWARGS)
    kw.update(overrides)
    torch.manual_seed(seed)
    model = AutoencoderKLQwenImage(**kw).to(torch.float32).eval()
    # conv gains chosen so decoded pixels mostly fall inside the [-1, 1] clamp and posterior
    # means/logvars are O(1). Causal 3x3x3 convs on one frame only see their last temporal tap, so
    # their effective fan-in is a third of the nominal one: gain sqrt(3) restores unit variance.
    reinit_params(model, seed=seed, gain=3 ** 0.5, bias_std=0.05,
                  overrides={"decoder.conv_out.weight": 0.8, "encoder.conv_out.weight": 1.5,
                             "quant_conv.weight": 1.0 / 3 ** 0.5, "post_quant_conv.weight": 1.0 / 3 ** 0.5,
                             "to_qkv.weight": 1.0 / 3 ** 0.5, "proj.weight": 1.0 / 3 ** 0.5,
                             "resample.1.weight": 1.0 / 3 ** 0.5})
    return model


# ---------------------------------------------------------------------------------------------
# The full tiny pipeline
# ---------------------------------------------------------------------------------------------
TINY_TEXT_ENCODER = dict(vocab_size=151936, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                         intermediate_size=64, mrope_section=[2, 1, 1], tie_word_embeddings=True)
TINY_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, axes_dims_rope=(4, 6, 6),
                        joint_attention_dim=32, num_layers=2)
SEED_TEXT_ENCODER, SEED_TRANSFORMER, SEED_VAE = 1001, 1002, 1003


def build_pipeline():
    from diffusers import QwenImagePipeline

    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(text_encoder_config(**TINY_TEXT_ENCODER), seed=SEED_TEXT_ENCODER)
    round_embeddings_to_bf16(text_encoder)
    transformer = build_transformer(seed=SEED_TRANSFORMER, **TINY_TRANSFORMER)
    vae = build_vae(seed=SEED_VAE)
    scheduler = build_scheduler()
    return QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                             transformer=transformer)


def save_pipeline(pipe, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    with bf16_embeddings_for_saving(pipe.text_encoder):
        pipe.save_pretrained(str(out_dir), safe_serialization=True)
    tok_dir = out_dir / "tokenizer"
    finalize_tokenizer_dir(tok_dir)
    # generation_config.json is written by transformers for a *ForConditionalGeneration; it is part of
    # the real layout (Qwen-Image ships one), keep it.


def finalize_tokenizer_dir(tok_dir: Path) -> None:
    """Size and hygiene for a saved tokenizer folder.

    * vocab.json / merges.txt are redundant with tokenizer.json: delete them if tokenizer.json is there;
    * tokenizer.json is rewritten as compact JSON (same content, no indentation: 5.4 MB instead of 11.4 MB);
    * loader-only keys that transformers 5 writes back into tokenizer_config.json ("is_local",
      "local_files_only") are dropped.
    """
    tj_path = tok_dir / "tokenizer.json"
    if tj_path.exists():
        for name in ("vocab.json", "merges.txt"):
            (tok_dir / name).unlink(missing_ok=True)
        with open(tj_path, encoding="utf-8") as f:
            tj = json.load(f)
        with open(tj_path, "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    tc_path = tok_dir / "tokenizer_config.json"
    if tc_path.exists():
        with open(tc_path, encoding="utf-8") as f:
            tc = json.load(f)
        for k in ("is_local", "local_files_only"):
            tc.pop(k, None)
        with open(tc_path, "w", encoding="utf-8") as f:
            json.dump(tc, f, indent=2, ensure_ascii=False)
            f.write("\n")


def load_pipeline(path: Path = TINY_PIPELINE_DIR):
    from diffusers import QwenImagePipeline

    pipe = QwenImagePipeline.from_pretrained(str(path), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_pipeline(path: Path) -> None:
    """Reload from disk, check dtypes, and generate one small image."""
    from safetensors import safe_open

    pipe = load_pipeline(path)
    te = pipe.text_encoder
    assert all(p.dtype == torch.float32 for p in te.parameters())
    with safe_open(str(path / "text_encoder" / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    emb_keys = [k for k in dtypes if k.endswith("embed_tokens.weight")]
    assert emb_keys and all(dtypes[k] == "BF16" for k in emb_keys), dtypes
    assert all(v == "F32" for k, v in dtypes.items() if k not in emb_keys), dtypes
    # the saved tokenizer encodes like the shared tokenizer.json through the `tokenizers` library
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(SHARED_TOKENIZER_DIR / "tokenizer.json"))
    for text in ("<|im_start|>system\nDescribe the image<|im_end|>\n", "一只橘猫 hello   world!\n\n", " "):
        assert pipe.tokenizer(text).input_ids == ref.encode(text).ids, text
    out = pipe(prompt="a red fox in the snow", height=64, width=64, num_inference_steps=2, true_cfg_scale=1.0,
               generator=torch.Generator("cpu").manual_seed(0), output_type="np")
    img = out.images
    assert img.shape == (1, 64, 64, 3), img.shape
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.01, (img.min(), img.max(), img.std())
    print(f"reload ok: image {img.shape} mean={img.mean():.4f} std={img.std():.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=TINY_PIPELINE_DIR)
    args = ap.parse_args(argv)
    setup_determinism()
    pipe = build_pipeline()
    save_pipeline(pipe, args.out)
    check_pipeline(args.out)
    print(f"wrote {args.out} ({dir_size(args.out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
