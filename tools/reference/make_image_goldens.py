"""Image goldens: files decoded the way the reference opens them, and Pillow's resampling.

diffusers' `load_image` is `ImageOps.exif_transpose(Image.open(f)).convert("RGB")`; VaeImageProcessor.resize
is `Image.resize(size, Image.LANCZOS)` and the Qwen2-VL image processor resizes with `Image.BICUBIC`. This
script writes what Pillow gives for both into tests/golden/image/ (see the README.md it writes there):

  decode/    small PNG, JPEG and WebP files (files/), hostile files (bad/), and the RGB pixels and alpha
             plane Pillow gives for each good file (golden.safetensors, listed in golden.json)
  resample/  deterministic source images and their LANCZOS and BICUBIC resizes, up and down

Needs only Pillow and numpy (pinned in requirements.txt), not torch:
  python3 tools/reference/make_image_goldens.py
Deterministic: running it twice gives byte-identical files with the pinned Pillow.
"""

from __future__ import annotations

import inspect
import io
import json
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps
from safetensors.numpy import save_file

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "tests" / "golden" / "image"
PILLOW_VERSION = "13.0.0"


# ---- PNG files written chunk by chunk: Pillow cannot write 16-bit colour, low bit depths or Adam7 ----

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def pack_row(samples: np.ndarray, bit_depth: int) -> bytes:
    """One scanline of samples (already interleaved) at `bit_depth`, without the filter byte."""
    if bit_depth == 16:
        return samples.astype(">u2").tobytes()
    if bit_depth == 8:
        return samples.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    padded = np.zeros(-(-len(samples) // per_byte) * per_byte, dtype=np.uint8)
    padded[: len(samples)] = samples
    out = np.zeros(len(padded) // per_byte, dtype=np.uint8)
    for i in range(per_byte):
        out |= padded[i::per_byte] << (8 - bit_depth * (i + 1))
    return out.tobytes()


def png_file(samples: np.ndarray, bit_depth: int, color_type: int, chunks: bytes = b"",
             interlaced: bool = False) -> bytes:
    """samples: [H, W, C] integers (palette indices for colour type 3); `chunks` go before IDAT."""
    height, width = samples.shape[:2]
    flat = samples.reshape(height, width, -1)
    if interlaced:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = flat[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += b"".join(b"\x00" + pack_row(row.reshape(-1), bit_depth) for row in sub)
    else:
        raw = b"".join(b"\x00" + pack_row(row.reshape(-1), bit_depth) for row in flat)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlaced else 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + chunks + png_chunk(b"IDAT", zlib.compress(raw, 9))
            + png_chunk(b"IEND", b""))


def tiff_orientation(orientation: int, big_endian: bool) -> bytes:
    """A minimal EXIF (TIFF) block: IFD0 with one Orientation (0x0112, SHORT) entry."""
    e = ">" if big_endian else "<"
    return ((b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", 8) + struct.pack(e + "H", 1)
            + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0))


def xmp_packet(orientation: int) -> bytes:
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
            f'tiff:Orientation="{orientation}"/></rdf:RDF></x:xmpmeta>').encode()


# ---- deterministic pictures ----

def noise(width: int, height: int, seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def gradient(width: int, height: int) -> np.ndarray:
    """A smooth picture: the case where resampling errors would show as banding."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = 127.5 + 127.5 * np.sin(x / 5.0) * np.cos(y / 7.0)
    return np.stack([r, g, b], axis=-1).round().astype(np.uint8)


def photo_like(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth shapes plus mild noise: what lossy codecs are made for (pure noise compresses badly)."""
    rng = np.random.default_rng(seed)
    base = gradient(width, height).astype(np.int32)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


# ---- the decode corpus ----

def decode_corpus() -> list[tuple[str, bytes, str]]:
    """(file name, bytes, what it exercises) for every good file."""
    files = []
    rgb = noise(13, 7, 1)
    rgba = noise(13, 7, 2, 4)
    gray16 = np.random.default_rng(3).integers(0, 65536, (7, 13, 1))
    gray16[0, :6, 0] = [0, 1, 127, 255, 256, 300]  # PIL clips I;16 to 255 when converting to RGB
    files.append(("png_rgb8.png", png_file(rgb, 8, 2), "RGB 8-bit"))
    files.append(("png_rgb16.png", png_file(np.random.default_rng(4).integers(0, 65536, (7, 13, 3)), 16, 2),
                  "RGB 16-bit: PIL keeps the high byte"))
    files.append(("png_rgba8.png", png_file(rgba, 8, 6), "RGBA 8-bit: alpha dropped from RGB, kept as the plane"))
    files.append(("png_rgba16.png", png_file(np.random.default_rng(5).integers(0, 65536, (7, 13, 4)), 16, 6),
                  "RGBA 16-bit: high bytes"))
    files.append(("png_gray8.png", png_file(noise(13, 7, 6, 1), 8, 0), "grey 8-bit, replicated"))
    files.append(("png_gray16.png", png_file(gray16, 16, 0), "grey 16-bit: PIL opens I;16 and clips to 255"))
    files.append(("png_gray1.png", png_file(np.random.default_rng(7).integers(0, 2, (7, 13, 1)), 1, 0),
                  "grey 1-bit"))
    files.append(("png_gray2.png", png_file(np.random.default_rng(8).integers(0, 4, (7, 13, 1)), 2, 0),
                  "grey 2-bit, scaled by 85"))
    files.append(("png_gray4.png", png_file(np.random.default_rng(9).integers(0, 16, (7, 13, 1)), 4, 0),
                  "grey 4-bit, scaled by 17"))
    files.append(("png_gray_alpha8.png", png_file(noise(13, 7, 10, 2), 8, 4), "grey+alpha 8-bit"))
    files.append(("png_gray_alpha16.png", png_file(np.random.default_rng(11).integers(0, 65536, (7, 13, 2)), 16, 4),
                  "grey+alpha 16-bit: high bytes"))
    palette = noise(12, 1, 12).reshape(-1)
    indices = np.random.default_rng(13).integers(0, 14, (7, 13, 1))  # 12 and 13 lie past the palette: black
    trns = bytes([0, 64, 128, 200, 255])  # entries past the tRNS list are opaque
    files.append(("png_palette8_trns.png",
                  png_file(indices, 8, 3, png_chunk(b"PLTE", palette.tobytes()) + png_chunk(b"tRNS", trns)),
                  "palette 8-bit with tRNS, indices past the palette"))
    files.append(("png_palette4.png",
                  png_file(indices % 12, 4, 3, png_chunk(b"PLTE", palette.tobytes())), "palette 4-bit"))
    gray_key = noise(13, 7, 14, 1) // 32 * 32
    files.append(("png_gray8_trns.png", png_file(gray_key, 8, 0, png_chunk(b"tRNS", struct.pack(">H", 64))),
                  "grey 8-bit with a tRNS colour key"))
    rgb_key = noise(13, 7, 15) // 128 * 128
    files.append(("png_rgb8_trns.png", png_file(rgb_key, 8, 2, png_chunk(b"tRNS", struct.pack(">HHH", 128, 0, 128))),
                  "RGB 8-bit with a tRNS colour key"))
    files.append(("png_rgba8_interlaced.png", png_file(noise(13, 7, 16, 4), 8, 6, interlaced=True),
                  "RGBA 8-bit, Adam7 interlaced"))
    oriented = noise(5, 3, 17)
    for orientation in range(1, 9):
        exif = png_chunk(b"eXIf", tiff_orientation(orientation, big_endian=orientation % 2 == 0))
        files.append((f"png_exif_orientation{orientation}.png", png_file(oriented, 8, 2, exif),
                      f"eXIf orientation {orientation}"))
    xmp = png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp_packet(6))
    files.append(("png_xmp_orientation6.png", png_file(oriented, 8, 2, xmp), "orientation 6 from XMP, no EXIF"))

    photo = Image.fromarray(photo_like(37, 29, 18))
    exif6 = b"Exif\x00\x00" + tiff_orientation(6, big_endian=True)
    exif3 = b"Exif\x00\x00" + tiff_orientation(3, big_endian=False)
    files.append(("jpeg_420_orientation6.jpg", pil_bytes(photo, "JPEG", quality=90, subsampling="4:2:0", exif=exif6),
                  "JPEG 4:2:0, odd size, EXIF orientation 6"))
    files.append(("jpeg_444_orientation3.jpg", pil_bytes(photo, "JPEG", quality=90, subsampling="4:4:4", exif=exif3),
                  "JPEG 4:4:4, EXIF orientation 3"))
    files.append(("jpeg_422.jpg", pil_bytes(photo, "JPEG", quality=75, subsampling="4:2:2"), "JPEG 4:2:2"))
    files.append(("jpeg_progressive.jpg", pil_bytes(photo, "JPEG", quality=85, progressive=True),
                  "progressive JPEG"))
    files.append(("jpeg_gray.jpg", pil_bytes(photo.convert("L"), "JPEG", quality=90), "greyscale JPEG"))
    files.append(("jpeg_cmyk.jpg", pil_bytes(photo.convert("CMYK"), "JPEG", quality=90),
                  "CMYK JPEG (Adobe, inverted)"))
    files.append(("jpeg_xmp_orientation8.jpg", pil_bytes(photo, "JPEG", quality=90, xmp=xmp_packet(8)),
                  "JPEG with orientation 8 in XMP only"))

    small = photo_like(23, 17, 19)
    small_rgba = np.concatenate([small, noise(23, 17, 20, 1)], axis=-1)
    files.append(("webp_lossless.webp", pil_bytes(Image.fromarray(small), "WEBP", lossless=True), "lossless WebP"))
    files.append(("webp_lossless_alpha.webp", pil_bytes(Image.fromarray(small_rgba), "WEBP", lossless=True, exact=True),
                  "lossless WebP with alpha"))
    files.append(("webp_lossy.webp", pil_bytes(Image.fromarray(small), "WEBP", quality=80), "lossy WebP"))
    files.append(("webp_lossy_alpha.webp", pil_bytes(Image.fromarray(small_rgba), "WEBP", quality=80),
                  "lossy WebP with alpha"))
    files.append(("webp_exif_orientation5.webp",
                  pil_bytes(Image.fromarray(small), "WEBP", lossless=True,
                            exif=b"Exif\x00\x00" + tiff_orientation(5, big_endian=False)),
                  "WebP with EXIF orientation 5"))
    frames = [Image.fromarray(small), Image.fromarray(255 - small)]
    files.append(("webp_animated.webp",
                  pil_bytes(frames[0], "WEBP", lossless=True, save_all=True, append_images=frames[1:], duration=100),
                  "animated WebP: the first frame"))
    files.append(("png_named_as.jpg", png_file(rgb, 8, 2), "a PNG named .jpg: the magic bytes decide"))
    return files


def pil_decode(data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB as diffusers' load_image gives it, and the alpha plane when the image has transparency."""
    # PIL advises converting palette images with tRNS to RGBA, which is what the alpha plane does.
    warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
    image = Image.open(io.BytesIO(data))
    has_alpha = image.mode in ("LA", "RGBA", "PA") or "transparency" in image.info
    upright = ImageOps.exif_transpose(image)
    rgb = np.asarray(upright.convert("RGB"))
    alpha = np.asarray(upright.convert("RGBA"))[..., 3].copy() if has_alpha else None
    return rgb, alpha


def hostile_files(good: dict[str, bytes]) -> dict[str, bytes]:
    """Files that must be refused with a clear message, written byte by byte."""
    bad = {}
    huge_header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    bad["huge_100000x100000.png"] = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", huge_header)
                                     + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))
    zero_header = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)
    bad["zero_width.png"] = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", zero_header) + png_chunk(b"IEND", b""))

    def patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
        sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
        return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]

    bad["huge_65500x65500.jpg"] = patch_jpeg_size(good["jpeg_422.jpg"], 65500, 65500)
    bad["zero_height.jpg"] = patch_jpeg_size(good["jpeg_422.jpg"], 37, 0)
    # A lossless WebP header: signature 0x2f, then 14 bits each of width-1 and height-1.
    vp8l = b"\x2f" + struct.pack("<I", (16384 - 1) | (16384 - 1) << 14) + b"\x00" * 16
    bad["huge_16384x16384.webp"] = (b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8l)) + b"WEBP" + b"VP8L"
                                    + struct.pack("<I", len(vp8l)) + vp8l)
    bad["text.png"] = b"This is a text file, not a picture.\n"
    bad["empty.webp"] = b""
    return bad


def write_decode_goldens(folder: Path) -> dict:
    (folder / "files").mkdir(parents=True)
    (folder / "bad").mkdir()
    tensors, cases, good = {}, [], {}
    for name, data, note in decode_corpus():
        (folder / "files" / name).write_bytes(data)
        good[name] = data
        rgb, alpha = pil_decode(data)
        stem = name.rsplit(".", 1)[0]
        tensors[f"{stem}.rgb"] = np.ascontiguousarray(rgb)
        if alpha is not None:
            tensors[f"{stem}.alpha"] = alpha
        cases.append({"file": f"files/{name}", "rgb": f"{stem}.rgb", "alpha": f"{stem}.alpha" if alpha is not None
                      else None, "width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "exercises": note})
    bad = hostile_files(good)
    for name, data in bad.items():
        (folder / "bad" / name).write_bytes(data)
    save_file(tensors, str(folder / "golden.safetensors"))
    return {"pillow": PIL.__version__, "cases": cases, "bad_files": sorted(f"bad/{name}" for name in bad),
            "call": 'rgb = np.asarray(ImageOps.exif_transpose(Image.open(f)).convert("RGB")); alpha = '
                    'np.asarray(ImageOps.exif_transpose(Image.open(f)).convert("RGBA"))[..., 3] when the mode has '
                    'alpha or info has "transparency"'}


# ---- the resample corpus ----

RESAMPLE_SOURCES = {
    "noise_1x1": (noise(1, 1, 101), [(1, 1), (5, 3), (8, 8)]),
    "noise_3x5": (noise(3, 5, 102), [(1, 1), (2, 3), (7, 11), (64, 48)]),
    "noise_37x53": (noise(37, 53, 103), [(64, 48), (18, 26), (12, 7), (74, 106), (37, 20), (90, 53)]),
    # Pillow 13 runs the vertical pass first when the height loses more than twice as many pixels as the
    # width: 54x44 is just on the horizontal-first side, 55x44 just past it.
    "noise_64x64": (noise(64, 64, 104), [(32, 32), (21, 21), (100, 37), (80, 80), (1, 64), (54, 44), (55, 44)]),
    "noise_97x61": (noise(97, 61, 105), [(48, 30), (33, 77), (130, 80), (1, 1), (97, 30), (50, 61)]),
    "gradient_64x64": (gradient(64, 64), [(17, 23), (70, 70), (28, 28)]),
    "noise_2x250": (noise(2, 250, 106), [(3, 40), (2, 100), (5, 300)]),
}
FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


def write_resample_goldens(folder: Path) -> dict:
    folder.mkdir(parents=True)
    # Image.resize's defaults decide the algorithm: no reduce() pre-pass unless reducing_gap is given.
    assert inspect.signature(Image.Image.resize).parameters["reducing_gap"].default is None
    tensors, cases = {}, []
    for source_name, (pixels, targets) in RESAMPLE_SOURCES.items():
        tensors[f"source.{source_name}"] = pixels
        image = Image.fromarray(pixels, "RGB")
        for filter_name, resample in FILTERS.items():
            for width, height in targets:
                name = f"{filter_name}.{source_name}.{width}x{height}"
                tensors[name] = np.ascontiguousarray(np.asarray(image.resize((width, height), resample)))
                cases.append({"source": f"source.{source_name}", "filter": filter_name, "width": width,
                              "height": height, "expected": name})
    save_file(tensors, str(folder / "golden.safetensors"))
    return {"pillow": PIL.__version__, "cases": cases,
            "call": "np.asarray(Image.fromarray(source, 'RGB').resize((width, height), FILTER))"}


README = """# Image goldens (tests/golden/image/)

Generated by `python3 tools/reference/make_image_goldens.py` with Pillow {pillow} (this file too: edit the
generator, not this file). Tensors are U8 in `golden.safetensors`, HWC (`[height, width, 3]` RGB,
`[height, width]` alpha); `golden.json` lists every case.

## decode/

`files/` holds small PNG, JPEG and WebP files; for each, `<stem>.rgb` is what diffusers' `load_image` gives
(`ImageOps.exif_transpose(Image.open(f)).convert("RGB")`) and `<stem>.alpha`, present when the image has an
alpha channel or a tRNS chunk, is the alpha of `convert("RGBA")` after the same transpose. PNGs are written
chunk by chunk (every colour type and bit depth, Adam7, eXIf and XMP orientation); JPEG and WebP files are
encoded by Pillow's own libjpeg-turbo and libwebp.

`bad/` holds files that must be refused with a clear message: headers claiming 100000x100000 (PNG),
65500x65500 (JPEG) and 16384x16384 (WebP) pixels, a zero width and a zero height, a text file named .png and
an empty file. Truncated and corrupted files are cut from `files/` by the tests themselves.

Cases:
{decode_cases}

## resample/

`source.<name>` are deterministic pictures (uniform noise and a smooth gradient); `<filter>.<name>.<W>x<H>`
is `Image.fromarray(source, "RGB").resize((W, H), Image.LANCZOS or Image.BICUBIC)` with the default
`reducing_gap=None` (no `reduce()` pre-pass). The sizes go up and down, one axis or both, and on both sides
of Pillow's choice of which pass runs first (vertical first when the height loses more than twice as many
pixels as the width).

Sizes: decode/ {decode_size:.1f} KiB, resample/ {resample_size:.1f} KiB.
"""


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    if PIL.__version__ != PILLOW_VERSION:
        raise SystemExit(f"Pillow {PIL.__version__} is installed; the goldens are made with {PILLOW_VERSION} "
                         "(tools/reference/requirements.txt)")
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    for name, write in (("decode", write_decode_goldens), ("resample", write_resample_goldens)):
        meta = write(OUT_DIR / name)
        with open(OUT_DIR / name / "golden.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
    decode_meta = json.loads((OUT_DIR / "decode" / "golden.json").read_text())
    decode_cases = "\n".join(f"* `{case['file']}` ({case['width']}x{case['height']}): {case['exercises']}"
                             for case in decode_meta["cases"])
    (OUT_DIR / "README.md").write_text(README.format(
        pillow=PIL.__version__, decode_cases=decode_cases, decode_size=folder_size(OUT_DIR / "decode") / 1024,
        resample_size=folder_size(OUT_DIR / "resample") / 1024))
    print(f"wrote {OUT_DIR} ({folder_size(OUT_DIR) / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
