#!/usr/bin/env python3
"""GGUF reference (issue 19): GGML dequantization goldens and tiny Qwen-Image transformer GGUF files, by gguf-py.

    python3 tools/reference/make_gguf_goldens.py     # tests/golden/gguf/

tests/golden/gguf/dequant/golden.safetensors holds, per GGML block type, a few raw blocks (`<type>.blocks`, u8)
and what gguf-py's gguf.quants.dequantize makes of them (`<type>.values`, f32, flat). Types gguf-py can quantize
(Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) get blocks quantized from random values; for the others (the K types, IQ4_NL,
IQ4_XS) the blocks are random bytes whose f16 scales are set to finite values, one of them subnormal.

tests/golden/gguf/tiny/tiny-qwen-image-<type>.gguf are models/tiny-qwen-image's transformer written as city96's
ComfyUI-GGUF convert.py writes Qwen-Image: architecture "qwen_image", the diffusers tensor names, 1-D tensors in
F32 and the others in the file's type. The tiny model's 2-D weights are too small for convert.py's size
threshold, so all of them are quantized here to exercise the type; a weight whose rows are not a whole number
of the type's blocks is stored as (-1, 256) rows with its torch shape in `comfy.gguf.orig_shape.<name>`, as
convert.py does. tiny/golden.json lists, per file, the largest difference of the dequantized weights from f32.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save_golden, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "gguf"
TINY_TRANSFORMER = ROOT / "models" / "tiny-qwen-image" / "transformer" / "diffusion_pytorch_model.safetensors"

QUANTIZABLE = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
# Byte offsets of the f16 scales in the blocks of the types gguf-py only dequantizes (ggml-common.h).
SCALE_OFFSETS = {
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
}
TINY_FILE_TYPES = [T.Q8_0, T.Q4_0]


def dequant_case(qtype: T, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    block_elements, block_bytes = GGML_QUANT_SIZES[qtype]
    blocks = 4 if block_elements == 32 else 2
    if qtype in QUANTIZABLE:
        values = rng.standard_normal((blocks, block_elements)).astype(np.float32)
        values[1] *= 1e-3  # small scales
        raw = quantize(values, qtype).reshape(-1)
    else:
        raw = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
        for block in range(blocks):
            for offset in SCALE_OFFSETS[qtype]:
                scale = np.float16(rng.uniform(-0.1, 0.1))
                if block == 1 and offset == SCALE_OFFSETS[qtype][0]:
                    scale = np.float16(3e-6)  # subnormal in f16
                raw[block, offset:offset + 2] = np.frombuffer(scale.tobytes(), dtype=np.uint8)
        raw = raw.reshape(-1)
    expected = dequantize(raw, qtype).reshape(-1).astype(np.float32)
    assert np.all(np.isfinite(expected)), qtype.name
    # The golden must move with its input: flip one bit of a code byte.
    moved = raw.copy()
    moved[block_bytes - 1] ^= 0x11
    assert not np.array_equal(dequantize(moved, qtype).reshape(-1), expected), qtype.name
    return raw, expected


def write_dequant_goldens() -> None:
    rng = np.random.default_rng(19)
    tensors, meta = {}, {"types": []}
    for qtype in QUANTIZABLE + list(SCALE_OFFSETS):
        raw, expected = dequant_case(qtype, rng)
        tensors[f"{qtype.name}.blocks"] = torch.from_numpy(raw.copy())
        tensors[f"{qtype.name}.values"] = torch.from_numpy(expected.copy())
        meta["types"].append(qtype.name)
    save_golden(OUT / "dequant", tensors, meta)


def tiny_gguf(qtype: T, path: Path) -> float:
    """Writes the tiny transformer in `qtype`; returns the largest weight difference from f32 after reading."""
    weights = load_file(str(TINY_TRANSFORMER))
    block_elements, _ = GGML_QUANT_SIZES[qtype]
    writer = GGUFWriter(str(path), arch="qwen_image")
    writer.add_quantization_version(2)
    stored_types = {}
    for name in sorted(weights):
        data = weights[name].astype(np.float32)
        stored = T.F32
        if data.ndim > 1:
            stored = qtype
            if data.shape[-1] % block_elements != 0:
                assert data.size % 256 == 0, name
                writer.add_array(f"comfy.gguf.orig_shape.{name}", [int(d) for d in data.shape])
                data = data.reshape(-1, 256)
        stored_types[name] = stored
        writer.add_tensor(name, quantize(data, stored), raw_dtype=stored)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    worst = 0.0
    reader = GGUFReader(str(path))
    assert str(reader.fields["general.architecture"].contents()) == "qwen_image"
    for tensor in reader.tensors:
        values = dequantize(tensor.data, tensor.tensor_type).reshape(-1)
        reference = weights[tensor.name].reshape(-1)
        worst = max(worst, float(np.max(np.abs(values - reference))))
        assert tensor.tensor_type == stored_types[tensor.name]
    assert worst > 0, "quantization left the weights unchanged: the file tests nothing"
    return worst


def main() -> None:
    write_dequant_goldens()
    meta = {}
    for qtype in TINY_FILE_TYPES:
        path = OUT / "tiny" / f"tiny-qwen-image-{qtype.name.lower()}.gguf"
        path.parent.mkdir(parents=True, exist_ok=True)
        meta[path.name] = {"max_weight_error": tiny_gguf(qtype, path), "bytes": path.stat().st_size}
        assert path.stat().st_size < 300_000, path
    write_json(OUT / "tiny" / "golden.json", meta)
    (OUT / "README.md").write_text("# GGUF goldens\n\nWritten by tools/reference/make_gguf_goldens.py:\n" + __doc__)
    print(meta)


if __name__ == "__main__":
    main()
