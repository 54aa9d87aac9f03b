#!/usr/bin/env python3
"""Dump the golden tensors under tests/golden/ (everything except tests/golden/tokenizer/).

    python3 tools/reference/make_goldens.py            # all sections, then tests/golden/README.md
    python3 tools/reference/make_goldens.py --check    # regenerate into a temp dir and compare bitwise
    python3 tools/reference/make_goldens.py --only vae_tiled   # one section's folders; README.md untouched

Reference = diffusers / transformers from PyPI (versions pinned in requirements.txt), CPU, float32,
one torch thread, torch.manual_seed fixed per item. The tiny pipeline is read from
models/tiny-qwen-image (build it first with tiny_models.py).

Each golden folder holds `golden.safetensors` (tensors), `golden.json` (non-tensor parameters and the
exact call) and, where a model is involved, that model saved with save_pretrained (its real layout).
tests/golden/README.md (the manifest) is generated from the files actually written plus the
descriptions registered below, so it cannot drift from the data.
"""

from __future__ import annotations

import argparse
import filecmp
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import (GOLDEN_DIR, TINY_PIPELINE_DIR, describe_safetensors, dir_size,  # noqa: E402
                    save_golden, setup_determinism, write_json)
import tiny_models as tm  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Manifest registry
# ---------------------------------------------------------------------------------------------
MANIFEST: list[dict] = []


def register(folder: Path, title: str, call: str, tensors: dict[str, str], notes: str = "",
             files: dict[str, str] | None = None) -> None:
    """Remember what a golden folder holds, for README.md. `tensors`: name -> meaning."""
    MANIFEST.append(dict(folder=folder, title=title, call=call.strip("\n"), tensors=tensors, notes=notes.strip(),
                         files=files or {}))


def rel(p: Path, root: Path) -> str:
    return str(p.relative_to(root))


# ---------------------------------------------------------------------------------------------
# 1. Text encoder (Qwen2_5_VLForConditionalGeneration), small vocabulary
# ---------------------------------------------------------------------------------------------
TE_CONFIGS = {
    # name: (builder kwargs, seed, layout)
    "a_h4_kv2_untied": (dict(vocab_size=1000, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                             intermediate_size=128, mrope_section=[2, 3, 3], tie_word_embeddings=False), 11, "nested"),
    "b_h4_kv1_tied": (dict(vocab_size=1000, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=1,
                           intermediate_size=96, mrope_section=[2, 3, 3], tie_word_embeddings=True), 12, "nested"),
    "c_h2_kv2_hd24": (dict(vocab_size=1000, hidden_size=48, num_layers=3, num_heads=2, num_kv_heads=2,
                           intermediate_size=80, mrope_section=[4, 4, 4], tie_word_embeddings=False), 13, "nested"),
    "d_flat_legacy_h7_kv1": (dict(vocab_size=1000, hidden_size=56, num_layers=2, num_heads=7, num_kv_heads=1,
                                  intermediate_size=96, mrope_section=[2, 1, 1], tie_word_embeddings=False),
                             14, "flat"),
}


def te_inputs(vocab: int, seed: int, L: int = 12, len1: int = 7, pad_id: int = 0):
    g = torch.Generator("cpu").manual_seed(seed)
    ids = torch.randint(1, vocab, (2, L), generator=g, dtype=torch.int64)
    mask = torch.ones(2, L, dtype=torch.int64)
    mask[1, len1:] = 0
    ids[1, len1:] = pad_id
    return ids, mask


def te_forward(model, ids, mask):
    """Run the model the way QwenImagePipeline does and also capture per-layer outputs."""
    layer_outs = []
    lm = model.model.language_model
    hooks = [layer.register_forward_hook(lambda mod, inp, out: layer_outs.append(out[0] if isinstance(out, tuple)
                                                                                 else out))
             for layer in lm.layers]
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    hs = out.hidden_states
    n = len(lm.layers)
    assert len(hs) == n + 1, len(hs)
    # hidden_states = (embeddings, out of layer 0, ..., out of layer n-2, final_norm(out of layer n-1))
    for i in range(1, n):
        assert torch.equal(hs[i], layer_outs[i - 1]), i
    assert torch.allclose(hs[-1], lm.norm(layer_outs[-1]), atol=0, rtol=0)
    return hs, layer_outs


def flatten_qwen25vl_config(cfg_dict: dict, dtype_name: str) -> dict:
    """transformers-5 nested Qwen2_5_VLConfig dict -> the flat layout of the published
    Qwen-Image text_encoder/config.json (transformers 4.5x era)."""
    t = cfg_dict["text_config"]
    v = cfg_dict["vision_config"]
    rope = dict(t["rope_parameters"])
    flat = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": t["attention_dropout"],
        "bos_token_id": t["bos_token_id"],
        "eos_token_id": t["eos_token_id"],
        "hidden_act": t["hidden_act"],
        "hidden_size": t["hidden_size"],
        "image_token_id": cfg_dict["image_token_id"],
        "initializer_range": t["initializer_range"],
        "intermediate_size": t["intermediate_size"],
        "max_position_embeddings": t["max_position_embeddings"],
        "max_window_layers": t["max_window_layers"],
        "model_type": "qwen2_5_vl",
        "num_attention_heads": t["num_attention_heads"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_key_value_heads": t["num_key_value_heads"],
        "rms_norm_eps": t["rms_norm_eps"],
        "rope_scaling": {"mrope_section": rope["mrope_section"], "rope_type": "default", "type": "default"},
        "rope_theta": rope["rope_theta"],
        "sliding_window": 32768,
        "tie_word_embeddings": cfg_dict["tie_word_embeddings"],
        "torch_dtype": dtype_name,
        "transformers_version": "4.53.1",
        "use_cache": True,
        "use_sliding_window": False,
        "video_token_id": cfg_dict["video_token_id"],
        "vision_config": {
            "depth": v["depth"],
            "fullatt_block_indexes": v["fullatt_block_indexes"],
            "hidden_act": v["hidden_act"],
            "hidden_size": v["hidden_size"],
            "in_chans": v["in_channels"],
            "intermediate_size": v["intermediate_size"],
            "num_heads": v["num_heads"],
            "out_hidden_size": v["out_hidden_size"],
            "patch_size": v["patch_size"],
            "spatial_merge_size": v["spatial_merge_size"],
            "spatial_patch_size": v["patch_size"],
            "temporal_patch_size": v["temporal_patch_size"],
            "tokens_per_second": v["tokens_per_second"],
            "torch_dtype": dtype_name,
            "window_size": v["window_size"],
        },
        "vision_end_token_id": cfg_dict["vision_end_token_id"],
        "vision_start_token_id": cfg_dict["vision_start_token_id"],
        "vision_token_id": 151654,
        "vocab_size": t["vocab_size"],
    }
    return flat


def legacy_tensor_name(name: str) -> str:
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return "visual." + name[len("model.visual."):]
    assert name == "lm_head.weight", name
    return name


def save_flat_legacy(model, out: Path) -> dict:
    """Write config.json (flat) + 2 safetensors shards with old tensor names + index.json.
    embed_tokens and lm_head are stored as bfloat16, everything else float32."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    tensors = {}
    for k, v in sd.items():
        nk = legacy_tensor_name(k)
        v = v.detach().contiguous()
        if k.endswith("embed_tokens.weight") or k == "lm_head.weight":
            v = v.to(torch.bfloat16)
        tensors[nk] = v
    names = sorted(tensors)
    # shard 1: everything but the language-model layers' second half; keep it deterministic and uneven
    shard1 = [n for n in names if n.startswith(("visual.", "model.embed_tokens")) or ".layers.0." in n]
    shard2 = [n for n in names if n not in shard1]
    files = {"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2}
    weight_map, total = {}, 0
    for fname, keys in files.items():
        save_file({k: tensors[k] for k in keys}, str(out / fname), metadata={"format": "pt"})
        for k in keys:
            weight_map[k] = fname
            total += tensors[k].numel() * tensors[k].element_size()
    write_json(out / "model.safetensors.index.json", {"metadata": {"total_size": total},
                                                       "weight_map": dict(sorted(weight_map.items()))})
    flat = flatten_qwen25vl_config(model.config.to_dict(), "float32")
    write_json(out / "config.json", flat)
    write_json(out / "generation_config.json", {"bos_token_id": 151643, "eos_token_id": 151645,
                                                "transformers_version": "4.53.1"})
    return flat


def gen_text_encoder(root: Path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    for name, (kw, seed, layout) in TE_CONFIGS.items():
        folder = root / "text_encoder" / name
        cfg = tm.text_encoder_config(**kw)
        model = tm.build_text_encoder(cfg, seed=seed)
        if layout == "flat":
            tm.round_embeddings_to_bf16(model)
        ids, mask = te_inputs(kw["vocab_size"], seed=seed + 100)
        hs, _ = te_forward(model, ids, mask)
        # the second sequence alone, unpadded: equals the batch row on its valid positions
        with torch.no_grad():
            alone = model(input_ids=ids[1:, :7], attention_mask=mask[1:, :7], output_hidden_states=True)
        alone_last = alone.hidden_states[-1]
        assert torch.allclose(alone_last[0], hs[-1][1, :7], atol=1e-5), (alone_last[0] - hs[-1][1, :7]).abs().max()
        if layout == "nested":
            model.save_pretrained(str(folder), safe_serialization=True)
        else:
            save_flat_legacy(model, folder)
        # prove transformers loads what we wrote and reproduces the golden
        re, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32,
                                                                     output_loading_info=True)
        missing = [k for k in info["missing_keys"] if not k.endswith("lm_head.weight") or not kw["tie_word_embeddings"]]
        assert not missing and not info["unexpected_keys"] and not info.get("mismatched_keys"), info
        re.eval()
        with torch.no_grad():
            r = re(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        assert torch.allclose(r, hs[-1], atol=1e-6, rtol=0), (r - hs[-1]).abs().max()
        save_golden(folder, {
            "input_ids": ids,
            "attention_mask": mask,
            "last_hidden_state": hs[-1],
            "all_hidden_states": torch.stack(list(hs), 0),
            "seq1_alone_last_hidden_state": alone_last,
        }, {
            "config": name,
            "layout": layout,
            "seed_weights": seed,
            "seed_inputs": seed + 100,
            "pad_token_id_used_in_input_ids": 0,
            "valid_lengths": [12, 7],
            "head_dim": kw["hidden_size"] // kw["num_heads"],
            "builder_kwargs": kw,
            "call": "model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)"
                    ".hidden_states[-1]",
            "attn_implementation": "sdpa",
        })
        if layout == "flat":
            files = {
                "config.json": "FLAT layout of the published Qwen-Image text_encoder/config.json: hidden_size, "
                               "num_attention_heads, num_key_value_heads, rope_theta, rope_scaling.mrope_section, "
                               "rms_norm_eps, vocab_size, tie_word_embeddings (false) at top level, vision_config "
                               "nested (in_chans, spatial_patch_size, ...), torch_dtype (not dtype)",
                "model.safetensors.index.json": "{metadata.total_size, weight_map: tensor name -> shard file}",
                "model-0000{1,2}-of-00002.safetensors": "OLD tensor names: model.embed_tokens.weight, "
                    "model.layers.N.*, model.norm.weight, visual.*, lm_head.weight. embed_tokens and lm_head are "
                    "BF16, every other tensor F32",
                "generation_config.json": "as shipped with the real model",
            }
            layout_note = ("Loaded back with `Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, "
                           "dtype=torch.float32)`: no missing/unexpected keys and identical outputs (transformers 5 "
                           "renames the old keys itself). The golden was computed with the bf16-rounded embedding "
                           "and lm_head upcast to float32.")
        else:
            files = {
                "config.json": "transformers-5 NESTED layout: text_config{...}, vision_config{...}, "
                               "text_config.rope_parameters{rope_type, rope_theta, mrope_section}",
                "model.safetensors": "transformers-5 tensor names (model.language_model.*, model.visual.*, "
                                     "lm_head.weight), all F32" + (
                                         "; TIED: there is no lm_head.weight tensor (it is "
                                         "model.language_model.embed_tokens.weight)" if kw["tie_word_embeddings"]
                                         else ""),
                "generation_config.json": "written by transformers",
            }
            layout_note = ""
        register(folder, f"text encoder `{name}`: hidden {kw['hidden_size']}, {kw['num_layers']} layers, "
                         f"{kw['num_heads']} heads / {kw['num_kv_heads']} kv heads (head_dim "
                         f"{kw['hidden_size'] // kw['num_heads']}), vocab {kw['vocab_size']}, "
                         f"{'tied' if kw['tie_word_embeddings'] else 'untied'} embeddings, {layout} config",
                 call="""
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)   # sdpa attention
out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
last_hidden_state = out.hidden_states[-1]
""", tensors={
                     "input_ids": "int64 token ids; row 0 has 12 real tokens, row 1 has 7 real tokens then 5 "
                                  "padding tokens (id 0) on the RIGHT",
                     "attention_mask": "int64, 1 = real token, 0 = padding",
                     "last_hidden_state": "float32 = out.hidden_states[-1], which is AFTER the final RMSNorm "
                                          "(model.norm) - checked equal to norm(output of the last decoder layer). "
                                          "Row 1 positions 7..11 (padding) hold values too (a padded query attends "
                                          "causally to the real keys); compare the valid positions",
                     "all_hidden_states": "float32 stack of out.hidden_states: [0] = input embeddings, [i] "
                                          "(1 <= i < n_layers) = output of decoder layer i-1 (before any norm), "
                                          "[n_layers] = final-norm(output of the last layer). NOTE transformers "
                                          "does not expose the last layer's pre-norm output",
                     "seq1_alone_last_hidden_state": "row 1 run alone without padding (input_ids[1:, :7]); equals "
                                                     "last_hidden_state[1, :7] (atol 1e-5)",
                 }, files=files, notes=layout_note)


# ---------------------------------------------------------------------------------------------
# 2. Prompt encoding through the tiny pipeline
# ---------------------------------------------------------------------------------------------
LONG_SENTENCE = ("A sunlit alpine meadow with wildflowers in red, yellow and violet, a wooden cabin with a "
                 "green door, three goats grazing near a stone wall, snow-capped peaks under a pale blue sky, "
                 "and a small sign that reads 'Welcome' in white letters. ")

PROMPTS = {
    "en_short": "A cat holding a sign that says hello world",
    "zh": "一只戴着红色围巾的橘猫坐在窗台上，窗外下着雪，温暖的灯光照在木地板上。",
    "space": " ",
    "long_gt512": LONG_SENTENCE * 15,   # 880 template tokens: prompt_embeds cut to 512 by max_sequence_length
    "long_gt1058": LONG_SENTENCE * 25,  # > 1058 tokens: the tokenizer itself truncates (end of template lost)
    "batch2": ["A cat holding a sign that says hello world", "一只戴着红色围巾的橘猫坐在窗台上。"],
}


def gen_prompt_encoding(root: Path, pipe):
    template = pipe.prompt_template_encode
    drop = pipe.prompt_template_encode_start_idx
    max_len = pipe.tokenizer_max_length + drop
    for name, prompt in PROMPTS.items():
        folder = root / "prompt_encoding" / name
        plist = [prompt] if isinstance(prompt, str) else prompt
        txt = [template.format(p) for p in plist]
        toks = pipe.tokenizer(txt, max_length=max_len, padding=True, truncation=True, return_tensors="pt")
        full = pipe.tokenizer(txt, padding=True, truncation=False, return_tensors="pt")
        torch.manual_seed(0)
        with torch.no_grad():
            emb, mask = pipe.encode_prompt(prompt, device="cpu", max_sequence_length=512)
            hs = pipe.text_encoder(input_ids=toks.input_ids, attention_mask=toks.attention_mask,
                                   output_hidden_states=True).hidden_states[-1]
        tensors = {
            "template_input_ids": toks.input_ids.to(torch.int64),
            "template_attention_mask": toks.attention_mask.to(torch.int64),
            "encoder_hidden_states": hs,
            "prompt_embeds": emb,
        }
        if mask is not None:
            tensors["prompt_embeds_mask"] = mask
        # sanity: prompt_embeds == hidden_states[valid][drop:][:512]
        for b in range(len(plist)):
            valid = hs[b][toks.attention_mask[b].bool()][drop:][:512]
            assert torch.equal(emb[b, :valid.shape[0]], valid)
            assert torch.all(emb[b, valid.shape[0]:] == 0)
        n_template_tokens = [int(x) for x in full.attention_mask.sum(1)]
        save_golden(folder, tensors, {
            "prompt": prompt,
            "formatted_text": txt,
            "template": template,
            "drop_idx": drop,
            "tokenizer_max_length": max_len,
            "max_sequence_length": 512,
            "untruncated_template_token_counts": n_template_tokens,
            "tokenized_lengths": [int(x) for x in toks.attention_mask.sum(1)],
            "prompt_embeds_seq_len": int(emb.shape[1]),
            "prompt_embeds_mask_is_none": mask is None,
            "call": "pipe.encode_prompt(prompt, device='cpu', max_sequence_length=512)",
            "pipeline": "models/tiny-qwen-image",
        })
    register(root / "prompt_encoding" / "<name>",
             "prompt encoding through models/tiny-qwen-image, one folder per prompt: " + ", ".join(PROMPTS),
             call="""
pipe = QwenImagePipeline.from_pretrained("models/tiny-qwen-image", torch_dtype=torch.float32)
prompt_embeds, prompt_embeds_mask = pipe.encode_prompt(prompt, device="cpu", max_sequence_length=512)
# internally (QwenImagePipeline._get_qwen_prompt_embeds):
txt  = [template.format(p) for p in prompts]
toks = pipe.tokenizer(txt, max_length=1024 + 34, padding=True, truncation=True, return_tensors="pt")
hs   = pipe.text_encoder(input_ids=toks.input_ids, attention_mask=toks.attention_mask,
                         output_hidden_states=True).hidden_states[-1]
per sample b: e_b = hs[b][attention_mask[b] == 1][34:]     # drop the 34 system-prompt tokens
prompt_embeds      = stack(e_b zero-padded on the right to max_b len(e_b))[:, :512]
prompt_embeds_mask = int64 ones over each e_b, zero-padded, [:, :512]; returned as None if it is all ones
""", tensors={
                 "template_input_ids": "int64 [B, T] ids of template.format(prompt), padded on the right with "
                                       "<|endoftext|> (151643) when B > 1, truncated to 1058 tokens",
                 "template_attention_mask": "int64 [B, T] tokenizer attention mask",
                 "encoder_hidden_states": "float32 [B, T, 32] text_encoder(...).hidden_states[-1] (after the final "
                                          "norm) for the whole template, before dropping",
                 "prompt_embeds": "float32 [B, S, 32] what encode_prompt returns, S = min(512, max valid len - 34)",
                 "prompt_embeds_mask": "int64 [B, S]; ABSENT when encode_prompt returned None (all ones, "
                                       "golden.json prompt_embeds_mask_is_none = true). Only batch2 has one",
             }, notes="""
* `long_gt512`: the template has more than 546 tokens, so prompt_embeds is cut to exactly 512 rows by
  `max_sequence_length` (the trailing `<|im_end|>\\n<|im_start|>assistant\\n` rows are cut away).
* `long_gt1058`: the tokenizer truncates the formatted text to 1058 = 1024 + 34 tokens (keeps the head),
  then encode_prompt keeps rows 34..545 -> 512 rows. `untruncated_template_token_counts` in golden.json
  has the count before truncation.
* `space`: the prompt " " (what the pipeline docs suggest as an empty negative prompt).
* `batch2`: two prompts of different lengths in one call: the shorter one's prompt_embeds rows past its
  length are exactly 0 and prompt_embeds_mask is returned (int64).
* The tokenizer is models/tiny-qwen-image/tokenizer (real Qwen2 BPE, no BOS, no EOS appended).
""")


# ---------------------------------------------------------------------------------------------
# 3. Transformer (MMDiT)
# ---------------------------------------------------------------------------------------------
TR_CONFIGS = {
    "t1_base": dict(model=dict(num_attention_heads=2, attention_head_dim=16, axes_dims_rope=(4, 6, 6),
                               joint_attention_dim=32), seed=21, B=1, img_shapes=[[(1, 4, 4)]], txt_len=9,
                    mask=None, timestep=[0.875]),
    "t2_nonsquare_odd": dict(model=dict(num_attention_heads=4, attention_head_dim=8, axes_dims_rope=(2, 2, 4),
                                        joint_attention_dim=24), seed=22, B=1, img_shapes=[[(1, 3, 5)]],
                             txt_len=6, mask="ones", timestep=[0.5]),
    "t3_batch2_padded_mask": dict(model=dict(num_attention_heads=3, attention_head_dim=12, axes_dims_rope=(4, 4, 4),
                                             joint_attention_dim=40), seed=23, B=2,
                                  img_shapes=[[(1, 4, 6)], [(1, 4, 6)]], txt_len=10, mask="pad_second_to_6",
                                  timestep=[0.9, 0.35]),
    "t4_zero_cond_t": dict(model=dict(num_attention_heads=2, attention_head_dim=16, axes_dims_rope=(4, 6, 6),
                                      joint_attention_dim=32, zero_cond_t=True), seed=24, B=2,
                           img_shapes=[[(1, 4, 4), (1, 2, 6)], [(1, 4, 4), (1, 2, 6)]], txt_len=8, mask=None,
                           timestep=[0.7, 0.7]),
    "t5_multi_image_edit": dict(model=dict(num_attention_heads=2, attention_head_dim=16, axes_dims_rope=(4, 6, 6),
                                           joint_attention_dim=32), seed=25, B=1,
                                img_shapes=[[(1, 4, 4), (1, 3, 3)]], txt_len=7, mask=None, timestep=[0.25]),
}


def rope_reference(img_shapes0, axes_dims, txt_len: int, theta: float = 10000.0):
    """Independent numpy model of QwenEmbedRope(scale_rope=True): returns (img_angles, txt_angles),
    each [S, sum(axes_dims)/2] in float64 (angle = position * freq)."""
    freqs = [1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d) for d in axes_dims]
    img, max_vid = [], 0
    for idx, (f, h, w) in enumerate(img_shapes0):
        for fi in range(f):
            for r in range(h):
                for c in range(w):
                    pos = (idx + fi, r - (h - h // 2), c - (w - w // 2))
                    img.append(np.concatenate([p * fr for p, fr in zip(pos, freqs)]))
        max_vid = max(max_vid, h // 2, w // 2)
    txt = [np.concatenate([(max_vid + j) * fr for fr in freqs]) for j in range(txt_len)]
    return np.stack(img), np.stack(txt)


def _check_rope(tab: torch.Tensor, angles: np.ndarray) -> None:
    ref = np.stack([np.cos(angles), np.sin(angles)], -1)
    err = np.abs(tab.numpy().astype(np.float64) - ref).max()
    assert err < 2e-5, err


def gen_transformer(root: Path):
    import inspect

    from diffusers import QwenImageTransformer2DModel

    supports_zero_cond = "zero_cond_t" in inspect.signature(QwenImageTransformer2DModel.__init__).parameters
    for name, c in TR_CONFIGS.items():
        if c["model"].get("zero_cond_t") and not supports_zero_cond:
            print(f"skip {name}: diffusers has no zero_cond_t")
            continue
        folder = root / "transformer" / name
        model = tm.build_transformer(seed=c["seed"], **c["model"])
        model.save_pretrained(str(folder), safe_serialization=True)
        B = c["B"]
        seq = sum(f * h * w for f, h, w in c["img_shapes"][0])
        g = torch.Generator("cpu").manual_seed(c["seed"] + 100)
        hidden = torch.randn(B, seq, 64, generator=g, dtype=torch.float32)
        ehs = torch.randn(B, c["txt_len"], c["model"]["joint_attention_dim"], generator=g, dtype=torch.float32)
        timestep = torch.tensor(c["timestep"], dtype=torch.float32)
        mask = None
        if c["mask"] == "ones":
            mask = torch.ones(B, c["txt_len"], dtype=torch.int64)
        elif c["mask"] == "pad_second_to_6":
            mask = torch.ones(B, c["txt_len"], dtype=torch.int64)
            mask[1, 6:] = 0
            ehs[1, 6:] = 0.0   # as encode_prompt does: padded rows are zeros
        img_shapes = [[tuple(s) for s in sample] for sample in c["img_shapes"]]
        # capture temb and RoPE tables
        cap = {}
        h1 = model.time_text_embed.register_forward_hook(lambda m, i, o: cap.__setitem__("temb", o))
        h2 = model.pos_embed.register_forward_hook(lambda m, i, o: cap.__setitem__("rope", o))
        with torch.no_grad():
            out = model(hidden_states=hidden, encoder_hidden_states=ehs, encoder_hidden_states_mask=mask,
                        timestep=timestep, img_shapes=img_shapes, return_dict=False)[0]
        h1.remove()
        h2.remove()
        # reload check
        re = QwenImageTransformer2DModel.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
        with torch.no_grad():
            out2 = re(hidden_states=hidden, encoder_hidden_states=ehs, encoder_hidden_states_mask=mask,
                      timestep=timestep, img_shapes=img_shapes, return_dict=False)[0]
        assert torch.equal(out, out2)
        if c["mask"] == "ones":
            with torch.no_grad():
                out_none = model(hidden_states=hidden, encoder_hidden_states=ehs, encoder_hidden_states_mask=None,
                                 timestep=timestep, img_shapes=img_shapes, return_dict=False)[0]
            assert torch.allclose(out, out_none, atol=1e-5), (out - out_none).abs().max()
        img_freqs, txt_freqs = cap["rope"]
        # README note 2: sinusoidal projection of t/1000, x1000 inside, cos half first
        t_in = torch.cat([timestep, timestep * 0]) if c["model"].get("zero_cond_t") else timestep
        with torch.no_grad():
            proj = model.time_text_embed.time_proj(t_in)
        tt = t_in.double().numpy()
        fr = np.exp(-np.log(10000.0) * np.arange(128) / 128)
        ang = 1000.0 * tt[:, None] * fr[None]
        assert np.abs(proj.double().numpy() - np.concatenate([np.cos(ang), np.sin(ang)], 1)).max() < 2e-4
        ref_img, ref_txt = rope_reference(img_shapes[0], c["model"]["axes_dims_rope"], c["txt_len"])
        _check_rope(torch.view_as_real(img_freqs), ref_img)
        _check_rope(torch.view_as_real(txt_freqs), ref_txt)
        tensors = {
            "hidden_states": hidden,
            "encoder_hidden_states": ehs,
            "timestep": timestep,
            "sample": out,
            "temb": cap["temb"],
            "rope_img": torch.view_as_real(img_freqs).contiguous(),
            "rope_txt": torch.view_as_real(txt_freqs).contiguous(),
        }
        if mask is not None:
            tensors["encoder_hidden_states_mask"] = mask
        if c["model"].get("zero_cond_t"):
            tensors["modulate_index"] = torch.tensor(
                [[0] * int(np.prod(s[0])) + [1] * sum(int(np.prod(x)) for x in s[1:]) for s in img_shapes],
                dtype=torch.int32)
        save_golden(folder, tensors, {
            "config": name,
            "seed_weights": c["seed"],
            "seed_inputs": c["seed"] + 100,
            "img_shapes": [[list(s) for s in sample] for sample in img_shapes],
            "txt_seq_len": c["txt_len"],
            "batch": B,
            "image_seq_len": seq,
            "encoder_hidden_states_mask": None if mask is None else "present (int64)",
            "timestep": c["timestep"],
            "model_config": {k: v for k, v in dict(model.config).items() if not k.startswith("_")},
            "call": "model(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states, "
                    "encoder_hidden_states_mask=encoder_hidden_states_mask or None, timestep=timestep, "
                    "img_shapes=img_shapes, return_dict=False)[0]",
        })
    register(root / "transformer" / "<cfg>",
             "QwenImageTransformer2DModel (MMDiT), 2 layers, all parameters re-initialised N(0, 1/fan_in) "
             "(biases N(0, 0.05^2), RMSNorm gains 1 + N(0, 0.1^2)), weights saved with save_pretrained "
             "(config.json + diffusion_pytorch_model.safetensors, all F32). Configs: "
             + "; ".join(f"`{n}` heads {c['model']['num_attention_heads']} x head_dim "
                         f"{c['model']['attention_head_dim']}, axes_dims_rope {tuple(c['model']['axes_dims_rope'])}, "
                         f"joint_dim {c['model']['joint_attention_dim']}, B={c['B']}, img_shapes "
                         f"{c['img_shapes'][0]}, txt {c['txt_len']}, mask {c['mask']}"
                         + (", zero_cond_t=True" if c["model"].get("zero_cond_t") else "")
                         for n, c in TR_CONFIGS.items()),
             call="""
model = QwenImageTransformer2DModel.from_pretrained(folder, torch_dtype=torch.float32)
sample = model(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
               encoder_hidden_states_mask=encoder_hidden_states_mask,   # None when the tensor is absent
               timestep=timestep, img_shapes=img_shapes,               # img_shapes from golden.json
               return_dict=False)[0]
""", tensors={
                 "hidden_states": "float32 [B, S_img, 64] packed latents (2x2 patches of 16 channels; see the "
                                  "packing note). S_img = sum of f*h*w over img_shapes[0]",
                 "encoder_hidden_states": "float32 [B, S_txt, joint_attention_dim] (prompt_embeds)",
                 "encoder_hidden_states_mask": "int64 [B, S_txt], 1 = valid; ABSENT = passed as None. t2: all "
                                               "ones (result equals the None path within 1e-5); t3: row 1 has "
                                               "6 valid tokens and its padded embedding rows are 0",
                 "timestep": "float32 [B] = t / 1000 as the pipeline passes it (sigma in [0, 1]); the model "
                             "multiplies by 1000 inside its sinusoidal projection. t3 uses two different values",
                 "sample": "float32 [B, S_img, 64] = proj_out output (patch_size^2 * out_channels = 4*16), "
                           "same packed layout as hidden_states",
                 "temb": "float32 [B, inner_dim] output of time_text_embed (for zero_cond_t: [2B, inner_dim], "
                         "rows B.. are for timestep 0)",
                 "rope_img": "float32 [S_img, head_dim/2, 2] (cos, sin) of the image RoPE angles "
                             "(view_as_real of the complex table), row order = packed token order",
                 "rope_txt": "float32 [S_txt, head_dim/2, 2] (cos, sin) of the text RoPE angles",
                 "modulate_index": "int32 [B, S_img] (zero_cond_t only): 0 for the first image's tokens "
                                   "(modulated with timestep t), 1 for the other images' tokens (timestep 0)",
             })


# ---------------------------------------------------------------------------------------------
# 4. VAE
# ---------------------------------------------------------------------------------------------
def _check_vae_single_frame_is_2d(vae) -> None:
    """Scramble everything a single frame must not use - taps 0 and 1 of every 3-tap causal conv kernel and all
    time_conv weights - and check decode/encode of one frame are unchanged (documents README note 8)."""
    import copy

    from diffusers.models.autoencoders.autoencoder_kl_qwenimage import QwenImageCausalConv3d

    v2 = copy.deepcopy(vae)
    g = torch.Generator("cpu").manual_seed(5)
    with torch.no_grad():
        for name, m in v2.named_modules():
            if isinstance(m, QwenImageCausalConv3d):
                if name.endswith("time_conv"):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g))
                elif m.weight.shape[2] == 3:
                    m.weight[:, :, :2].copy_(torch.randn(m.weight[:, :, :2].shape, generator=g))
    z = torch.randn(1, 16, 1, 4, 6, generator=g)
    x = torch.rand(1, 3, 1, 32, 48, generator=g) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(vae.decode(z).sample, v2.decode(z).sample, atol=1e-6, rtol=0)
        assert torch.allclose(vae.encode(x).latent_dist.mean, v2.encode(x).latent_dist.mean, atol=1e-6, rtol=0)


VAE_ALT_KWARGS = dict(base_dim=3, dim_mult=[1, 2, 3, 3], num_res_blocks=1)


def gen_vae(root: Path, pipe):
    from diffusers import AutoencoderKLQwenImage

    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    cases = []
    alt_dir = root / "vae" / "alt_cfg"
    alt = tm.build_vae(seed=31, **VAE_ALT_KWARGS)
    alt.save_pretrained(str(alt_dir), safe_serialization=True)
    alt = AutoencoderKLQwenImage.from_pretrained(str(alt_dir), torch_dtype=torch.float32).eval()
    for model_name, model, dec_sizes, enc_sizes, base in (
            ("tiny", vae, [(8, 8), (6, 10)], [(64, 64), (48, 80)], root / "vae"),
            ("alt_cfg", alt, [(5, 7)], [(40, 56)], alt_dir)):
        for (h, w) in dec_sizes:
            seed = 40 + h * 100 + w
            g = torch.Generator("cpu").manual_seed(seed)
            # what the pipeline hands vae.decode: normalised latents mapped back, z * std + mean
            z = torch.randn(1, 16, 1, h, w, generator=g, dtype=torch.float32) * std + mean
            with torch.no_grad():
                dec = model.decode(z, return_dict=False)[0]
            assert dec.shape == (1, 3, 1, 8 * h, 8 * w)
            folder = base / f"decode_{h}x{w}"
            save_golden(folder, {"latents": z, "decoded": dec}, {
                "vae": "models/tiny-qwen-image/vae" if model_name == "tiny" else "tests/golden/vae/alt_cfg",
                "seed": seed, "latent_hw": [h, w], "image_hw": [8 * h, 8 * w],
                "call": "vae.decode(latents, return_dict=False)[0]",
                "fraction_clamped": float((dec.abs() >= 1.0).float().mean()),
            })
            cases.append(rel(folder, root))
        for (H, W) in enc_sizes:
            seed = 50 + H * 1000 + W
            g = torch.Generator("cpu").manual_seed(seed)
            # a smooth-ish image in [-1, 1]: random low-res upsampled + noise, clamped
            low = torch.rand(1, 3, 1, H // 8, W // 8, generator=g) * 2 - 1
            img = torch.nn.functional.interpolate(low[:, :, 0], size=(H, W), mode="bilinear",
                                                  align_corners=False)[:, :, None]
            img = (img + 0.2 * torch.randn(img.shape, generator=g)).clamp(-1, 1).to(torch.float32)
            with torch.no_grad():
                dist = model.encode(img, return_dict=False)[0]
                raw = model._encode(img)
            assert torch.equal(torch.cat([dist.mean, torch.clamp(raw[:, 16:], -30, 20)], 1),
                               torch.cat([raw[:, :16], dist.logvar], 1))
            folder = base / f"encode_{H}x{W}"
            save_golden(folder, {"image": img, "posterior_mean": dist.mean, "posterior_logvar": dist.logvar,
                                 "moments": raw}, {
                "vae": "models/tiny-qwen-image/vae" if model_name == "tiny" else "tests/golden/vae/alt_cfg",
                "seed": seed, "image_hw": [H, W], "latent_hw": [H // 8, W // 8],
                "call": "d = vae.encode(image, return_dict=False)[0]; d.mean, d.logvar",
            })
            cases.append(rel(folder, root))
    _check_vae_single_frame_is_2d(vae)
    register(root / "vae" / "<case>",
             "AutoencoderKLQwenImage. `vae/decode_*`, `vae/encode_*` use the VAE of models/tiny-qwen-image "
             "(base_dim 4, dim_mult [1,2,4,4], num_res_blocks 2, temperal_downsample [false,true,true], z_dim 16, "
             "real latents_mean/std); `vae/alt_cfg/` holds a second VAE (base_dim "
             f"{VAE_ALT_KWARGS['base_dim']}, dim_mult {VAE_ALT_KWARGS['dim_mult']}, num_res_blocks "
             f"{VAE_ALT_KWARGS['num_res_blocks']}: odd channel counts, so the upsamplers' dim // 2 rounds down; "
             "saved there with save_pretrained, all F32) and its own cases. Both re-initialised with random "
             "weights (about 7% of decoded pixels hit the clamp). Cases: " + ", ".join(f"`{c}`" for c in cases),
             call="""
vae = AutoencoderKLQwenImage.from_pretrained(<vae folder>, torch_dtype=torch.float32)   # see golden.json "vae"
decoded = vae.decode(latents, return_dict=False)[0]                 # decode_* cases
d = vae.encode(image, return_dict=False)[0]                         # encode_* cases (DiagonalGaussianDistribution)
posterior_mean, posterior_logvar = d.mean, d.logvar
""", tensors={
                 "latents": "float32 [1, 16, 1, h, w] = randn * latents_std + latents_mean, i.e. UN-normalised, "
                            "exactly what vae.decode receives from the pipeline. Layout [B, C, T=1 frame, H, W]",
                 "decoded": "float32 [1, 3, 1, 8h, 8w] in [-1, 1] (the decoder output is clamped to [-1, 1])",
                 "image": "float32 [1, 3, 1, H, W] in [-1, 1]",
                 "moments": "float32 [1, 32, 1, H/8, W/8] = quant_conv(encoder(image)) (before the chunk/clamp)",
                 "posterior_mean": "float32 [1, 16, 1, H/8, W/8] = moments[:, :16]",
                 "posterior_logvar": "float32 [1, 16, 1, H/8, W/8] = clamp(moments[:, 16:], -30, 20)",
             })


# Tile sizes in pixels (diffusers' enable_tiling arguments), small enough that a 10x11 latent gives a 3x3 grid with
# blends in both directions, different heights and widths, and a last column (one latent, 8 pixels) narrower than
# the blend width, so the reference's min(extent, sizes) clipping is exercised.
VAE_TILED_LATENT_HW = (10, 11)
VAE_TILING = dict(tile_sample_min_height=48, tile_sample_min_width=64, tile_sample_stride_height=32,
                  tile_sample_stride_width=40)


def gen_vae_tiled(root: Path):
    from diffusers import AutoencoderKLQwenImage

    # A fresh copy: enable_tiling changes the module, and the pipeline goldens decode with the pipeline's VAE.
    vae = AutoencoderKLQwenImage.from_pretrained(str(TINY_PIPELINE_DIR / "vae"), torch_dtype=torch.float32).eval()
    vae.enable_tiling(**VAE_TILING)
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    h, w = VAE_TILED_LATENT_HW
    seed = 40 + h * 100 + w
    g = torch.Generator("cpu").manual_seed(seed)
    z = torch.randn(1, 16, 1, h, w, generator=g, dtype=torch.float32) * std + mean
    with torch.no_grad():
        dec = vae.decode(z, return_dict=False)[0]
        assert torch.equal(dec, vae.tiled_decode(z, return_dict=False)[0])
    assert dec.shape == (1, 3, 1, 8 * h, 8 * w)
    tiles = [len(range(0, h, VAE_TILING["tile_sample_stride_height"] // 8)),
             len(range(0, w, VAE_TILING["tile_sample_stride_width"] // 8))]
    assert tiles[0] >= 2 and tiles[1] >= 3
    folder = root / "vae" / f"decode_tiled_{h}x{w}"
    save_golden(folder, {"latents": z, "decoded": dec}, {
        "vae": "models/tiny-qwen-image/vae", "seed": seed, "latent_hw": [h, w], "image_hw": [8 * h, 8 * w],
        "tiling": VAE_TILING, "tiles_hw": tiles,
        "call": "vae.enable_tiling(**tiling); vae.decode(latents, return_dict=False)[0]",
        "fraction_beyond_unit": float((dec.abs() > 1.0).float().mean()),
    })
    register(folder,
             "AutoencoderKLQwenImage tiled decode (`enable_tiling`), with the VAE of models/tiny-qwen-image: "
             f"{h}x{w} latents in a {tiles[0]}x{tiles[1]} grid of overlapping tiles (see golden.json `tiling`), "
             "linearly blended with the tiles above and to the left.",
             call="""
vae = AutoencoderKLQwenImage.from_pretrained("models/tiny-qwen-image/vae", torch_dtype=torch.float32)
vae.enable_tiling(tile_sample_min_height=..., tile_sample_min_width=...,    # golden.json "tiling"
                  tile_sample_stride_height=..., tile_sample_stride_width=...)
decoded = vae.decode(latents, return_dict=False)[0]                 # takes tiled_decode: latents exceed one tile
""", tensors={
                 "latents": "float32 [1, 16, 1, h, w] = randn * latents_std + latents_mean, as in the decode_* cases",
                 "decoded": "float32 [1, 3, 1, 8h, 8w], NOT clamped: the reference's tiled path skips decode's "
                            "clamp (golden.json fraction_beyond_unit counts the pixels beyond [-1, 1])",
             })

    # Tiled encode, with the same tiles over the 80x88 picture of those latents: latent tiles of 6x8 every 4x5,
    # blended over 2x3 latents; the last column (8 pixels, one latent) is again narrower than its blend.
    picture = torch.rand(1, 3, 1, 8 * h, 8 * w, generator=g, dtype=torch.float32) * 2 - 1
    with torch.no_grad():
        tiled = vae.encode(picture, return_dict=False)[0]
        vae.disable_tiling()
        whole = vae.encode(picture, return_dict=False)[0]
    moved = float((tiled.mean - whole.mean).abs().max() / whole.mean.abs().max())
    assert moved > 1e-3, "the tiles must change the encoding, or the test cannot tell tiled from whole"
    folder = root / "vae" / f"encode_tiled_{8 * h}x{8 * w}"
    save_golden(folder, {"image": picture, "mean": tiled.mean, "logvar": tiled.logvar}, {
        "vae": "models/tiny-qwen-image/vae", "seed": seed, "image_hw": [8 * h, 8 * w], "latent_hw": [h, w],
        "tiling": VAE_TILING, "tiles_hw": tiles, "relative_change_from_whole_encode": moved,
        "call": "vae.enable_tiling(**tiling); vae.encode(image, return_dict=False)[0]",
    })
    register(folder,
             f"AutoencoderKLQwenImage tiled encode (`enable_tiling`): an {8 * h}x{8 * w} picture in a "
             f"{tiles[0]}x{tiles[1]} grid of overlapping pixel tiles whose moments blend over latents "
             "(golden.json `tiling`, as for decode_tiled).",
             call="""
vae.enable_tiling(**tiling)                                          # golden.json "tiling"
posterior = vae.encode(image, return_dict=False)[0]                  # takes tiled_encode: the picture exceeds one tile
""", tensors={
                 "image": "float32 [1, 3, 1, 80, 88] uniform in [-1, 1], drawn after the decode case's latents",
                 "mean": "float32 [1, 16, 1, 10, 11] posterior.mean",
                 "logvar": "float32 [1, 16, 1, 10, 11] posterior.logvar (clamped to [-30, 20])",
             })

# ---------------------------------------------------------------------------------------------
# 5. Scheduler
# ---------------------------------------------------------------------------------------------
SCHED_CASES = [(256, 256, 4), (1024, 1024, 50), (1328, 1328, 50), (64, 48, 3), (512, 768, 20), (1664, 928, 30),
               (1000, 600, 8)]


def gen_scheduler(root: Path):
    from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift, retrieve_timesteps

    sched = tm.build_scheduler()
    cfg = sched.config
    tensors, cases = {}, []
    for (W, H, steps) in SCHED_CASES:
        key = f"w{W}_h{H}_s{steps}"
        # exactly QwenImagePipeline.__call__ steps 4-5
        lat_h = 2 * (H // (8 * 2))
        lat_w = 2 * (W // (8 * 2))
        image_seq_len = (lat_h // 2) * (lat_w // 2)
        sigmas_in = np.linspace(1.0, 1 / steps, steps)
        mu = calculate_shift(image_seq_len, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                             cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
        timesteps, n = retrieve_timesteps(sched, steps, "cpu", sigmas=sigmas_in, mu=mu)
        assert n == steps
        # README scheduler note: the same numbers from plain numpy float32
        s32 = sigmas_in.astype(np.float32)
        s32 = math.exp(mu) / (math.exp(mu) + (1 / s32 - 1) ** 1.0)
        s32 = 1 - (1 - s32) / ((1 - s32[-1]) / (1 - 0.02))
        assert s32.dtype == np.float32 and np.array_equal(s32, sched.sigmas[:-1].numpy()), key
        assert np.array_equal((torch.from_numpy(s32) * 1000).numpy(), timesteps.numpy()), key
        tensors[f"{key}.sigmas_in"] = torch.from_numpy(sigmas_in.astype(np.float64))
        tensors[f"{key}.timesteps"] = timesteps.clone()
        tensors[f"{key}.sigmas"] = sched.sigmas.clone()
        cases.append({"key": key, "width": W, "height": H, "steps": steps, "image_seq_len": image_seq_len,
                      "mu": float(mu)})
    # one full Euler step as the pipeline does it (begin_index 0, then step k-times); we take step k=1 of
    # the 256x256x4 schedule.
    W, H, steps = 256, 256, 4
    image_seq_len = (H // 16) * (W // 16)
    mu = calculate_shift(image_seq_len, 256, 8192, 0.5, 0.9)
    sched = tm.build_scheduler()
    timesteps, _ = retrieve_timesteps(sched, steps, "cpu", sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    g = torch.Generator("cpu").manual_seed(77)
    # the step is elementwise: a small [1, 16, 64] tensor (a 64x64 image's packed latents) is enough
    sample = torch.randn(1, 16, 64, generator=g, dtype=torch.float32)
    model_output = torch.randn(1, 16, 64, generator=g, dtype=torch.float32)
    sched.set_begin_index(0)
    k = 1
    x = sample.clone()
    prevs = []
    for i, t in enumerate(timesteps):
        x = sched.step(model_output, t, x, return_dict=False)[0]
        prevs.append(x)
    # single step from `sample` at index k (fresh scheduler state, looked up by timestep value)
    sched2 = tm.build_scheduler()
    retrieve_timesteps(sched2, steps, "cpu", sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    prev_k = sched2.step(model_output, timesteps[k], sample, return_dict=False)[0]
    dt = sched2.sigmas[k + 1] - sched2.sigmas[k]
    assert torch.equal(prev_k, sample + dt * model_output)
    tensors["euler.sample"] = sample
    tensors["euler.model_output"] = model_output
    tensors["euler.prev_sample"] = prev_k
    tensors["euler.loop_all_steps"] = torch.stack(prevs, 0)
    save_golden(root / "scheduler", tensors, {
        "scheduler_config": {k: v for k, v in dict(cfg).items() if not k.startswith("_")},
        "cases": cases,
        "euler": {"schedule": "w256_h256_s4", "step_index": k, "timestep": float(timesteps[k]),
                  "sigma": float(sched2.sigmas[k]), "sigma_next": float(sched2.sigmas[k + 1]), "seed": 77,
                  "call": "scheduler.step(model_output, timesteps[1], sample, return_dict=False)[0]"},
    })
    register(root / "scheduler", "FlowMatchEulerDiscreteScheduler with the real Qwen-Image scheduler config; "
                                 "cases (width, height, steps): " + ", ".join(str(c) for c in SCHED_CASES),
             call="""
sched = FlowMatchEulerDiscreteScheduler.from_config(<golden.json scheduler_config>)
image_seq_len = (2*(H//16) // 2) * (2*(W//16) // 2)          # = packed latent sequence length
sigmas_in = np.linspace(1.0, 1/steps, steps)                  # float64
mu = calculate_shift(image_seq_len, 256, 8192, 0.5, 0.9)      # from the scheduler config, NOT the function defaults
sched.set_timesteps(sigmas=sigmas_in, mu=mu)                  # via retrieve_timesteps(sched, steps, "cpu", sigmas=..., mu=mu)
timesteps, sigmas = sched.timesteps, sched.sigmas
""", tensors={
                 "<key>.sigmas_in": "float64 [steps] np.linspace(1.0, 1/steps, steps) as passed in",
                 "<key>.timesteps": "float32 [steps] = shifted sigmas * 1000 (NOT divided by 1000; the pipeline "
                                    "divides by 1000 when calling the transformer)",
                 "<key>.sigmas": "float32 [steps + 1] shifted + stretched sigmas with the final 0 appended",
                 "euler.sample": "float32 [1, 16, 64] random packed latents (the step is elementwise; the "
                                 "schedule used is w256_h256_s4's)",
                 "euler.model_output": "float32 [1, 16, 64] random velocity",
                 "euler.prev_sample": "float32 [1, 16, 64] = step(model_output, timesteps[1], sample) = sample + "
                                      "(sigmas[2] - sigmas[1]) * model_output",
                 "euler.loop_all_steps": "float32 [4, 1, 16, 64]: x_0 = sample; x_{i+1} = step(model_output, "
                                         "timesteps[i], x_i) for i = 0..3 with set_begin_index(0) (the pipeline's "
                                         "loop, same model_output every step)",
             }, notes="""
<key> is `w{width}_h{height}_s{steps}`; golden.json `cases` gives width, height, steps, image_seq_len and mu
(python float, computed in float64). The shift itself runs in numpy float32:
`s = exp(mu) / (exp(mu) + (1/s_in - 1) ** 1.0)` (time_shift_type exponential, sigma 1.0) on
`sigmas_in.astype(float32)`, then shift_terminal 0.02 stretches it:
`s = 1 - (1 - s) / ((1 - s[-1]) / (1 - 0.02))` so the last sigma is exactly 0.02 (before the appended 0).
timesteps = sigmas[:-1] * 1000 in float32.
Quirk: with num_inference_steps = 1, sigmas_in = [1.0], so 1 - s[-1] = 0 and the shift_terminal stretch divides
0 by 0: diffusers produces sigmas [nan, 0] (and a NaN image). No golden for it; a port may reject steps < 2
or reproduce the NaN.
""")


# ---------------------------------------------------------------------------------------------
# 6. Noise
# ---------------------------------------------------------------------------------------------
NOISE_CASES = [((7,), 0), ((15,), 0), ((16,), 0), ((17,), 1), ((4, 4), 42), ((31,), 3), ((32,), 3), ((33,), 3),
               ((3, 5, 7), 123), ((1, 1, 16, 8, 8), 42), ((1, 1, 16, 12, 8), 7), ((1000,), 2024),
               ((65539,), 2024), ((2, 1, 16, 24, 24), 5)]


def _check_randn_model(t: torch.Tensor, m: np.ndarray) -> None:
    err = float(np.abs(t.numpy() - m).max()) if t.numel() else 0.0
    if t.numel() < 16:
        assert err == 0.0, err
    else:
        assert err <= 5e-7 * max(1.0, float(np.abs(m).max())), err


def gen_noise(root: Path, pipe):
    tensors, cases = {}, []
    for shape, seed in NOISE_CASES:
        key = "randn_" + "x".join(map(str, shape)) + f"_seed{seed}"
        t = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        _check_randn_model(t, common.TorchCpuRandnModel(seed).randn(shape))
        tensors[key] = t
        cases.append({"key": key, "shape": list(shape), "seed": seed, "numel": int(np.prod(shape))})
    # consecutive calls on one generator (state and the scalar path's cached value carry over)
    sequential = {}
    for seed, sizes in ((99, (5, 3, 17, 1000, 7)), (98, (5, 17, 1))):
        g = torch.Generator("cpu").manual_seed(seed)
        model = common.TorchCpuRandnModel(seed)
        for i, n in enumerate(sizes):
            t = torch.randn((n,), generator=g, dtype=torch.float32)
            _check_randn_model(t, model.randn((n,)))
            tensors[f"sequential_seed{seed}.call{i}_n{n}"] = t
        sequential[str(seed)] = list(sizes)
    # the pipeline's prepare_latents
    prep = []
    for (W, H, seed) in [(64, 64, 42), (96, 64, 123)]:
        gen = torch.Generator("cpu").manual_seed(seed)
        packed = pipe.prepare_latents(1, 16, H, W, torch.float32, torch.device("cpu"), gen)
        raw = torch.randn((1, 1, 16, 2 * (H // 16), 2 * (W // 16)),
                          generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        assert torch.equal(pipe._pack_latents(raw, 1, 16, raw.shape[3], raw.shape[4]), packed)
        key = f"prepare_latents_w{W}_h{H}_seed{seed}"
        tensors[key + ".packed"] = packed
        tensors[key + ".unpacked"] = raw
        prep.append({"key": key, "width": W, "height": H, "seed": seed,
                     "raw_shape": list(raw.shape), "packed_shape": list(packed.shape)})
    save_golden(root / "noise", tensors, {"cases": cases, "sequential": sequential, "prepare_latents": prep})
    register(root / "noise", "torch CPU randn (the generator the pipeline uses)",
             call="""
randn_<shape>_seed<s>  = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=torch.float32)
sequential_seed{s}.call{i}_n{n} : g = torch.Generator("cpu").manual_seed(s); then torch.randn((n,), generator=g,
                                 dtype=torch.float32) for n in (5, 3, 17, 1000, 7) (s=99) / (5, 17, 1) (s=98), in order
prepare_latents_w{W}_h{H}_seed{s}.packed = pipe.prepare_latents(1, 16, H, W, torch.float32, "cpu",
                                                                torch.Generator("cpu").manual_seed(s))
""", tensors={
                 "randn_<shape>_seed<s>": "float32 of that shape (shape dims joined by 'x'); sizes straddle 16 "
                                          "because torch's CPU normal sampler treats numel < 16 and numel >= 16 "
                                          "differently (see notes)",
                 "sequential_seed{s}.call{i}_n{n}": "float32 [n], the i-th consecutive draw from one generator "
                                                    "(mt19937 state and the scalar path's cached normal carry "
                                                    "over; seed 98 shows the cache surviving a >=16 call)",
                 "prepare_latents_*.unpacked": "float32 [1, 1, 16, 2*(H//16), 2*(W//16)] = the randn the pipeline "
                                               "draws; NOTE the shape is (B, 1, C, h, w): the frame axis is dim 1 "
                                               "here, not dim 2",
                 "prepare_latents_*.packed": "float32 [1, (h/2)*(w/2), 64] = _pack_latents(unpacked): "
                                             "view(B, C, h/2, 2, w/2, 2).permute(0, 2, 4, 1, 3, 5)"
                                             ".reshape(B, (h/2)*(w/2), C*4); feature index = c*4 + dy*2 + dx",
             }, notes="""
torch.randn on the CPU, float32 (checked by make_goldens.py against common.TorchCpuRandnModel, a numpy
re-implementation: bit-exact for numel < 16, within a few ulp (<= 5e-7) for numel >= 16):
* one mt19937 stream, seeded with the standard init_genrand(seed) (32-bit seed).
* numel >= 16 (contiguous): draw numel uniforms u = (draw & 0xFFFFFF) * 2^-24 (float, low 24 bits of one
  32-bit draw each); for each block of 16 and j = 0..7: r = sqrt(-2 ln(1 - u[j])), th = 2 pi u[j+8],
  out[j] = r cos th, out[j+8] = r sin th (float32 math; torch uses SLEEF vector log/sin/cos). If
  numel % 16 != 0, 16 FRESH uniforms are drawn and the LAST 16 outputs [numel-16, numel) are recomputed
  from them (overwriting the overlap).
* numel < 16: per element, at::normal_distribution<double>: if the generator holds a cached normal, return
  it (and clear it); else u1, u2 = ((hi << 32 | lo) & (2^53 - 1)) * 2^-53 from two draws each (hi first),
  r = sqrt(-2 log1p(-u2)), th = 2 pi u1, cache r sin th, return r cos th; cast to float32. The cache
  lives in the generator and survives intervening numel >= 16 calls.
""")


# ---------------------------------------------------------------------------------------------
# 7. Whole pipeline
# ---------------------------------------------------------------------------------------------
PIPE_CASES = {
    "a_64x64_nocfg_seed42": dict(prompt="A cat holding a sign that says hello world", negative_prompt=None,
                                 true_cfg_scale=1.0, width=64, height=64, num_inference_steps=4, seed=42),
    "b_64x64_cfg4_space_seed7": dict(prompt="A cat holding a sign that says hello world", negative_prompt=" ",
                                     true_cfg_scale=4.0, width=64, height=64, num_inference_steps=4, seed=7),
    "c_96x64_cfg4_neg_seed123": dict(prompt="一只戴着红色围巾的橘猫坐在窗台上，窗外下着雪。",
                                     negative_prompt="blurry, low quality, watermark", true_cfg_scale=4.0, width=96,
                                     height=64, num_inference_steps=3, seed=123),
}


def gen_pipeline(root: Path, pipe):
    for name, c in PIPE_CASES.items():
        folder = root / "pipeline" / name
        args = dict(prompt=c["prompt"], negative_prompt=c["negative_prompt"], true_cfg_scale=c["true_cfg_scale"],
                    width=c["width"], height=c["height"], num_inference_steps=c["num_inference_steps"],
                    max_sequence_length=512)
        steps_lat = []

        def cb(p, i, t, kw):
            steps_lat.append(kw["latents"].clone())
            return {}

        captured = {}
        orig_decode = pipe.vae.decode

        def dec_spy(z, return_dict=True):
            captured["vae_input"] = z.clone()
            out = orig_decode(z, return_dict=return_dict)
            captured["decoded"] = (out[0] if not return_dict else out.sample).clone()
            return out

        pipe.vae.decode = dec_spy
        try:
            img = pipe(**args, generator=torch.Generator("cpu").manual_seed(c["seed"]), output_type="np",
                       callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents"]).images
        finally:
            pipe.vae.decode = orig_decode
        lat = pipe(**args, generator=torch.Generator("cpu").manual_seed(c["seed"]), output_type="latent").images
        assert torch.equal(lat, steps_lat[-1])
        with torch.no_grad():
            pe, pm = pipe.encode_prompt(c["prompt"], device="cpu", max_sequence_length=512)
        init = pipe.prepare_latents(1, 16, c["height"], c["width"], torch.float32, torch.device("cpu"),
                                    torch.Generator("cpu").manual_seed(c["seed"]))
        sched = tm.build_scheduler()
        seq = (c["height"] // 16) * (c["width"] // 16)
        from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift, retrieve_timesteps
        mu = calculate_shift(seq, 256, 8192, 0.5, 0.9)
        ts, _ = retrieve_timesteps(sched, c["num_inference_steps"], "cpu",
                                   sigmas=np.linspace(1.0, 1 / c["num_inference_steps"], c["num_inference_steps"]),
                                   mu=mu)
        tensors = {
            "image": torch.from_numpy(np.ascontiguousarray(img)).to(torch.float32),
            "latents": lat,
            "initial_latents": init,
            "latents_per_step": torch.stack(steps_lat, 0),
            "prompt_embeds": pe,
            "timesteps": ts,
            "sigmas": sched.sigmas,
            "vae_input": captured["vae_input"],
            "decoded": captured["decoded"],
        }
        do_cfg = c["true_cfg_scale"] > 1 and c["negative_prompt"] is not None
        if do_cfg:
            with torch.no_grad():
                ne, nm = pipe.encode_prompt(c["negative_prompt"], device="cpu", max_sequence_length=512)
            tensors["negative_prompt_embeds"] = ne
        save_golden(folder, tensors, {
            "pipeline": "models/tiny-qwen-image",
            "prompt": c["prompt"],
            "negative_prompt": c["negative_prompt"],
            "true_cfg_scale": c["true_cfg_scale"],
            "do_true_cfg": do_cfg,
            "width": c["width"],
            "height": c["height"],
            "num_inference_steps": c["num_inference_steps"],
            "seed": c["seed"],
            "generator": "torch.Generator('cpu').manual_seed(seed)",
            "guidance_scale": None,
            "max_sequence_length": 512,
            "num_images_per_prompt": 1,
            "mu": float(mu),
            "image_seq_len": seq,
            "img_shapes": [[[1, c["height"] // 16, c["width"] // 16]]],
            "call": "pipe(prompt=prompt, negative_prompt=negative_prompt, true_cfg_scale=true_cfg_scale, "
                    "width=width, height=height, num_inference_steps=num_inference_steps, max_sequence_length=512, "
                    "generator=torch.Generator('cpu').manual_seed(seed), output_type='np' | 'latent').images",
        })
    register(root / "pipeline" / "<case>",
             "whole QwenImagePipeline on models/tiny-qwen-image, CPU float32. Cases: "
             + "; ".join(f"`{n}`: {c['width']}x{c['height']} (WxH), {c['num_inference_steps']} steps, "
                         f"true_cfg_scale {c['true_cfg_scale']}, negative_prompt {c['negative_prompt']!r}, "
                         f"seed {c['seed']}" for n, c in PIPE_CASES.items()),
             call="""
pipe = QwenImagePipeline.from_pretrained("models/tiny-qwen-image", torch_dtype=torch.float32)
image   = pipe(prompt=..., negative_prompt=..., true_cfg_scale=..., width=W, height=H, num_inference_steps=N,
               max_sequence_length=512, generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
latents = pipe(<same arguments>, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
# every argument is in golden.json
""", tensors={
                 "image": "float32 [1, H, W, 3] in [0, 1] (output_type='np'): (decoded/2 + 0.5).clamp(0, 1), HWC",
                 "latents": "float32 [1, (H/16)*(W/16), 64] (output_type='latent'): the PACKED final latents, "
                            "not unpacked, not de-normalised",
                 "initial_latents": "float32 [1, (H/16)*(W/16), 64] = prepare_latents(...) with the seeded "
                                    "generator (see noise/)",
                 "latents_per_step": "float32 [N, 1, (H/16)*(W/16), 64] latents after each scheduler step "
                                     "(callback_on_step_end); the last one equals `latents`",
                 "prompt_embeds": "float32 [1, S, 32] encode_prompt(prompt) (mask None: single prompt)",
                 "negative_prompt_embeds": "float32 [1, S_neg, 32] encode_prompt(negative_prompt); only with CFG",
                 "timesteps": "float32 [N] scheduler timesteps (x1000 scale)",
                 "sigmas": "float32 [N+1] scheduler sigmas incl. the final 0",
                 "vae_input": "float32 [1, 16, 1, H/8, W/8]: unpacked latents / (1/latents_std) + latents_mean = "
                              "what vae.decode receives",
                 "decoded": "float32 [1, 3, 1, H, W] vae.decode output in [-1, 1] (the pipeline then takes "
                            "[:, :, 0])",
             }, notes="""
The denoising loop, exactly (diffusers 0.42.1 QwenImagePipeline.__call__):
```
img_shapes = [[(1, H // 16, W // 16)]] * batch
for t in timesteps:                                   # float32, 1000-scale
    timestep = t.expand(B).to(latents.dtype)
    noise_pred = transformer(hidden_states=latents, timestep=timestep / 1000, guidance=None,
                             encoder_hidden_states_mask=prompt_embeds_mask,      # None here
                             encoder_hidden_states=prompt_embeds, img_shapes=img_shapes)
    if do_true_cfg:                                    # true_cfg_scale > 1 and a negative prompt given
        neg = transformer(... negative_prompt_embeds, negative_prompt_embeds_mask ...)
        comb = neg + true_cfg_scale * (noise_pred - neg)
        noise_pred = comb * (norm(noise_pred, dim=-1, keepdim) / norm(comb, dim=-1, keepdim))   # per token, over 64 features
    latents = latents + (sigma[i+1] - sigma[i]) * noise_pred
latents = unpack(latents) -> [B, 16, 1, H/8, W/8]
latents = latents / (1 / latents_std) + latents_mean     # (written that way in diffusers; = latents * std + mean)
image = vae.decode(latents)[:, :, 0]                  # clamp(-1, 1) inside decode
image = (image / 2 + 0.5).clamp(0, 1) -> [B, H, W, 3]
```
Case a: true_cfg_scale = 1 -> no CFG (negative prompt None). Case b: negative prompt " " enables CFG.
""")


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------
README_HEAD = """# Golden tensors (manifest)

Generated by `python3 tools/reference/make_goldens.py` (this file too - edit the generator, not this file).
Reference: diffusers {diffusers}, transformers {transformers}, torch {torch} (CPU, float32, 1 thread), pinned in
`tools/reference/requirements.txt`. `tests/golden/tokenizer/` is produced by someone else
(`tools/reference/make_tokenizer_corpus.py`) and is not listed here, nor are `tests/golden/image/`
(`tools/reference/make_image_goldens.py`, Pillow), `tests/golden/vision/`
(`tools/reference/make_vision_goldens.py`), `tests/golden/edit/` (`tools/reference/make_edit_goldens.py`),
`tests/golden/inpaint/` (`tools/reference/make_inpaint_goldens.py`) and `tests/golden/lora/`
(`tools/reference/make_lora_goldens.py`: LoRA files in six key styles, LoRA and Lightning pipeline calls); each has a
README.md of its own.

Conventions:
* Every folder has `golden.safetensors` (the tensors, names below) and `golden.json` (every non-tensor parameter,
  the seeds and the exact call). A model folder also holds the weights saved with `save_pretrained`
  (the real diffusers/transformers layout).
* "ABSENT" tensors: a tensor missing from golden.safetensors means the value was `None` in the call.
* Shapes are in PyTorch order (row-major, last index fastest). Every float tensor is F32 unless stated;
  integer inputs are I64 (masks too) unless stated.
* Suggested tolerances for a float32 re-implementation: abs 1e-4 + rel 1e-4 on component outputs (1e-3 after many
  layers/steps, and for the whole pipeline). The scheduler can be matched bit for bit (numpy float32 math, see
  its notes). Noise: bit for bit for numel < 16, a few ulp (<= 5e-7) for numel >= 16 unless SLEEF's vector
  log/sin/cos are reproduced.
* Padded positions: the text-encoder goldens include outputs at padded positions. They are well defined (a
  padded query still attends causally to the real keys) but a port may skip them: compare the valid positions.
  (The transformer's `sample` holds image tokens only, so text padding never shows there.)

## models/tiny-qwen-image/

A complete `QwenImagePipeline` saved with `save_pretrained` (build: `python3 tools/reference/tiny_models.py`):
`model_index.json`; `scheduler/scheduler_config.json` (the published Qwen-Image config verbatim);
`tokenizer/` (`tokenizer.json` compact single-line JSON + `tokenizer_config.json`, no vocab.json/merges.txt);
`text_encoder/` (Qwen2_5_VLForConditionalGeneration, transformers-5 nested config and tensor names: vocab 151936,
hidden 32, 2 layers, 4 heads / 2 kv heads, head_dim 8, intermediate 64, rope_theta 1e6, mrope_section [2,1,1],
rms_norm_eps 1e-6, TIED embeddings (no lm_head.weight tensor), 2-block vision tower (hidden 16, out_hidden_size
32); `model.language_model.embed_tokens.weight` is stored as BF16, every other tensor F32 - the goldens were made
with it loaded as float32); `transformer/` (heads 2 x head_dim 16, axes_dims_rope [4,6,6], joint_attention_dim 32,
2 layers, F32); `vae/` (see vae/ below, F32). All weights are random (seeds in tools/reference/tiny_models.py).

## Things a C++ re-implementation must get right (read the reference code with these in mind)
{notes}

## The golden folders
"""

GLOBAL_NOTES = """
1. **Latent layouts.** The VAE works on `[B, C=16, T=1, H/8, W/8]`. The transformer works on packed tokens
   `[B, (H/16)*(W/16), 64]`: `pack(x[B,16,h,w]) = x.view(B,16,h/2,2,w/2,2).permute(0,2,4,1,3,5).reshape(B,(h/2)*(w/2),64)`,
   so token index = row*(w/2) + col and feature = c*4 + dy*2 + dx. `unpack` is the exact inverse and produces
   `[B,16,1,h,w]`. `prepare_latents` draws the noise with shape `(B, 1, 16, h, w)` (frame axis at dim 1!) and packs
   it. `output_type="latent"` returns the packed tensor.
2. **Timesteps.** The scheduler's `timesteps` are on the 0..1000 scale (= sigma*1000). The pipeline passes
   `timestep / 1000` (= sigma, in [0,1]) to the transformer, and the transformer's `Timesteps(256,
   flip_sin_to_cos=True, downscale_freq_shift=0, scale=1000)` multiplies by 1000 again: emb = [cos(1000*t*f_i),
   sin(1000*t*f_i)] with f_i = exp(-ln(10000) * i / 128), i = 0..127 (cos half FIRST). Then
   `linear_1 -> SiLU -> linear_2` gives temb. `calculate_shift` uses the scheduler config (base 256, max 8192,
   base_shift 0.5, max_shift 0.9), not the function defaults.
3. **Transformer text mask (diffusers 0.42.1).** There is no `txt_seq_lens` argument any more. The
   `encoder_hidden_states_mask` (int64 from encode_prompt, converted to bool) becomes a joint attention mask
   `cat([text_mask, ones(img)])[:, None, None, :]` - keys only; padded text QUERIES are still computed. The text
   RoPE length is always the full padded text length `S_txt`. When every mask entry is 1 the pipeline passes
   `None` instead (encode_prompt returns None), and with a single prompt that is the normal case.
4. **Transformer RoPE** (`QwenEmbedRope`, theta 10000, `scale_rope=True`): complex, INTERLEAVED pairs: channels
   (2k, 2k+1) of each head form one complex number, rotated by `exp(i*angle_k)` (`apply_rotary_emb_qwen`,
   `use_real=False`). The head_dim/2 frequency slots are split by axes_dims_rope/2 = (frame, height, width) slots
   (real model: 8, 28, 28); within an axis of dim d, freq_j = 1 / 10000^(2j/d), j < d/2. Image token (f, r, c) of
   image number `idx` in img_shapes: frame position = idx + f; height position = r - (h - h//2) ... i.e. the
   rows are centred: positions -(h - h//2) .. h//2 - 1 (same for width, e.g. h=5 -> -3..1). Text token j:
   position `max_vid_index + j` on ALL THREE axes, with `max_vid_index = max(h//2, w//2)` over all images in
   img_shapes[0]. Only `img_shapes[0]` is used for the whole batch. RoPE is applied after the per-head QK RMSNorm,
   to the text and image queries/keys separately, then the sequence is concatenated as [text, image].
5. **Transformer block**: `img_mod`/`txt_mod` = Linear(SiLU(temb)) -> 6*dim, chunked (shift, scale, gate) for
   norm1 then (shift, scale, gate) for norm2; `x*(1+scale)+shift`, LayerNorm without affine, eps 1e-6.
   MLP = GELU(tanh approx), hidden 4*dim. Final `norm_out` (AdaLayerNormContinuous) chunks its linear output as
   (SCALE, SHIFT) - the opposite order of the blocks. The text stream input is `txt_in(RMSNorm(encoder_hidden_states))`
   (txt_norm eps 1e-6, with weight).
6. **zero_cond_t** (`zero_cond_t=True` in the transformer config; a flag of later Qwen-Image-Edit checkpoints): the timestep batch is doubled
   to `cat([t, 0*t])`, so temb is `[2B, dim]`; `img_mod` produces modulation for both halves and each image
   token picks the t-half (first image in img_shapes[i], index 0) or the 0-half (all later images, index 1)
   via `modulate_index`. The text stream (`txt_mod`) and `norm_out` use only the first half (timestep t).
   No extra inputs beyond the multi-image `img_shapes` (`use_additional_t_cond` is a separate flag, left off).
7. **Text encoder** (Qwen2.5-VL language model, text-only): position ids are `arange(L)` for every row (no
   cumsum over the mask; padding is on the right so it does not matter for real tokens), the same on the 3
   M-RoPE axes, so M-RoPE degenerates to ordinary 1-D RoPE: HALF-SPLIT layout (`rotate_half`: channel k pairs
   with k + head_dim/2), theta 1e6, inv_freq_k = 1e6^(-2k/head_dim). q/k/v projections have biases, o_proj does
   not. RMSNorm eps 1e-6, computed in float32, `weight * x`. GQA: kv head j serves query heads
   [j*g, (j+1)*g). The attention mask is causal AND key-padding. `hidden_states[-1]` is AFTER the final norm.
8. **VAE on one frame.** Every `QwenImageCausalConv3d` pads time by (2*p, 0) with zeros (causal) and the first
   chunk has no cache, so for a single frame a 3x3x3 kernel only uses its LAST temporal tap `w[:, :, 2]` (a 1x1x1
   kernel its only tap): the whole VAE is 2-D for images. `time_conv` of upsample3d/downsample3d is NOT run for
   the first frame (decode: the cache slot is set to "Rep" and skipped; encode: the first chunk only stores a
   cache), so those weights are unused. Downsample = ZeroPad2d(0,1,0,1) (right/bottom) + Conv2d 3x3 stride 2,
   no other padding. Upsample = nearest x2 + Conv2d 3x3 pad 1 that HALVES the channels (dim -> dim/2); the next
   up-block's input width accounts for that. `QwenImageRMS_norm` = F.normalize over channels (x / max(||x||_2,
   1e-12)) * sqrt(C) * gamma - not the usual mean-square + eps form. Mid-block attention: single head over the
   H*W positions, q/k/v from one 1x1 conv, scale 1/sqrt(C). Decode output is clamped to [-1, 1]. Encode:
   `moments = quant_conv(encoder(x))`, mean = first 16 channels, logvar = clamp(last 16, -30, 20).
9. **CFG renormalisation**: after `comb = neg + s*(cond - neg)`, the pipeline rescales each token's 64-vector to
   the cond prediction's L2 norm (see pipeline notes).
10. **Tokenizer.** models/tiny-qwen-image/tokenizer is the real Qwen2 BPE; added tokens stop at 151664 like
   Qwen2.5-VL's (the shared Qwen3 file's <think> etc. were dropped). The pipeline tokenizes
   `template.format(prompt)` with `max_length = 1024 + 34, truncation=True, padding=True` (right padding with
   <|endoftext|> = 151643) and drops the first 34 tokens (the system prompt) of each sequence AFTER the
   text encoder ran on the whole sequence.
"""


def write_readme(root: Path) -> None:
    import diffusers
    import transformers

    # A folder with an entry of its own is listed there, not again under a <case> entry above it.
    own_entries = {e["folder"] for e in MANIFEST if "<" not in str(e["folder"])}

    lines = [README_HEAD.format(diffusers=diffusers.__version__, transformers=transformers.__version__,
                                torch=torch.__version__.split("+")[0], notes=GLOBAL_NOTES.strip("\n"))]
    for e in MANIFEST:
        folder = e["folder"]
        relf = rel(folder, root) if "<" not in str(folder) else str(folder.relative_to(root))
        lines.append(f"### `tests/golden/{relf}/`\n")
        lines.append(e["title"] + "\n")
        lines.append("Call:\n```python\n" + e["call"] + "\n```\n")
        if e["files"]:
            lines.append("Model files:\n")
            for k, v in e["files"].items():
                lines.append(f"* `{k}`: {v}")
            lines.append("")
        lines.append("Tensor meanings:\n")
        for k, v in e["tensors"].items():
            lines.append(f"* `{k}`: {v}")
        lines.append("")
        if e["notes"]:
            lines.append(e["notes"] + "\n")
        # concrete files: every golden.safetensors under this entry
        if "<" in str(folder):
            base = Path(str(folder).split("<")[0])
            paths = sorted(p for p in base.rglob("golden.safetensors") if p.parent not in own_entries)
            if e["title"].startswith("AutoencoderKLQwenImage"):
                paths = sorted(p for p in paths)
        else:
            paths = [folder / "golden.safetensors"]
        lines.append("Files (name: dtype shape):\n")
        for p in paths:
            size = p.stat().st_size
            lines.append(f"* `tests/golden/{rel(p, root)}` ({size / 1024:.1f} KiB)")
            for name, dt, shape in describe_safetensors(p):
                lines.append(f"  * `{name}`: {dt} {shape}")
        lines.append("")
    # totals
    lines.append("## Sizes\n")
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "tokenizer"):
        lines.append(f"* `tests/golden/{sub.name}/`: {dir_size(sub) / 1e6:.2f} MB")
    lines.append(f"* `models/tiny-qwen-image/`: {dir_size(TINY_PIPELINE_DIR) / 1e6:.2f} MB")
    lines.append("")
    (root / "README.md").write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
def generate(root: Path) -> None:
    setup_determinism()
    MANIFEST.clear()
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("text_encoder", "prompt_encoding", "transformer", "vae", "scheduler", "noise", "pipeline"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)
    t0 = time.time()
    pipe = tm.load_pipeline(TINY_PIPELINE_DIR)
    steps = [("text_encoder", lambda: gen_text_encoder(root)),
             ("prompt_encoding", lambda: gen_prompt_encoding(root, pipe)),
             ("transformer", lambda: gen_transformer(root)),
             ("vae", lambda: (gen_vae(root, pipe), gen_vae_tiled(root))),
             ("scheduler", lambda: gen_scheduler(root)),
             ("noise", lambda: gen_noise(root, pipe)),
             ("pipeline", lambda: gen_pipeline(root, pipe))]
    for name, fn in steps:
        t = time.time()
        fn()
        print(f"{name}: {time.time() - t:.1f}s, {dir_size(root / name) / 1e6:.2f} MB", flush=True)
    write_readme(root)
    print(f"total {time.time() - t0:.1f}s; tests/golden (mine) {sum(dir_size(root / s) for s, _ in steps) / 1e6:.2f} MB")


# Sections that can be (re)generated alone: each writes only its own folders and needs no pipeline.
STANDALONE = {"vae_tiled": gen_vae_tiled}


def generate_only(root: Path, section: str) -> None:
    setup_determinism()
    MANIFEST.clear()
    t = time.time()
    STANDALONE[section](root)
    for e in MANIFEST:
        print(f"{section}: wrote tests/golden/{rel(e['folder'], root)} in {time.time() - t:.1f}s")
    # The manifest lists every section, so only a full run can rewrite it.
    print("README.md not rewritten: run without --only to regenerate it", flush=True)


def compare_trees(old: Path, new: Path) -> list[str]:
    """Byte-compare the generated parts of two golden trees (tokenizer/, image/, vision/, edit/, inpaint/ and lora/
    come from other scripts)."""
    def files(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0]
                not in ("tokenizer", "image", "vision", "edit", "inpaint", "lora")}

    fo, fn = files(old), files(new)
    diffs = [f"only in {old}: {p}" for p in sorted(fo - fn)] + [f"only in new: {p}" for p in sorted(fn - fo)]
    diffs += [f"differs: {p}" for p in sorted(fo & fn) if not filecmp.cmp(old / p, new / p, shallow=False)]
    return diffs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=GOLDEN_DIR)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare byte for byte with --out")
    ap.add_argument("--only", choices=sorted(STANDALONE),
                    help="write only this section's goldens into --out, leaving every other file alone")
    args = ap.parse_args(argv)
    if args.only:
        generate_only(args.out, args.only)
        return
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp) / "golden"
            generate(tmp)
            diffs = compare_trees(args.out, tmp)
            for d in diffs:
                print(d)
            print("check:", "OK (bit-identical)" if not diffs else f"{len(diffs)} differences")
            sys.exit(1 if diffs else 0)
    generate(args.out)


if __name__ == "__main__":
    main()
