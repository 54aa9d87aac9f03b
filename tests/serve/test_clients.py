"""Drives `canvas serve` with real clients: the `openai` Python SDK, unchanged, and an A1111-style script
(plain HTTP with the JSON bodies A1111 front ends send). Started by tests/serve/run_client_tests.sh, which
passes the server's URL and the tiny models' folder.

Usage: python test_clients.py http://127.0.0.1:PORT
"""

import base64
import json
import struct
import sys
import urllib.error
import urllib.request

import openai


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height of a PNG, from its IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def gradient_png(width: int, height: int) -> bytes:
    """A small RGB PNG, written with the standard library only."""
    import zlib

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 7 % 256, y * 11 % 256, (x + y) % 256))
        for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def check_openai(base: str) -> None:
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
    models = client.models.list()
    assert [model.id for model in models.data] == ["tiny", "tiny-edit"], models

    generated = client.images.generate(
        model="gpt-image-1", prompt="a red fox", n=2, size="32x32", response_format="b64_json",
        extra_body={"seed": 11, "steps": 2})
    assert len(generated.data) == 2
    first = base64.b64decode(generated.data[0].b64_json)
    assert png_size(first) == (32, 32)
    assert first != base64.b64decode(generated.data[1].b64_json), "two seeds gave one image"

    again = client.images.generate(prompt="a red fox", size="32x32", response_format="url",
                                   extra_body={"seed": 11, "steps": 2})
    with urllib.request.urlopen(again.data[0].url, timeout=60) as response:
        fetched = response.read()
    # The PNGs' metadata differ (each records its own request); the pixels are the seed's.
    assert png_size(fetched) == (32, 32)

    picture = gradient_png(32, 32)
    edited = client.images.edit(model="tiny-edit", image=[("a.png", picture), ("b.png", picture)],
                                prompt="make it red", size="32x32", extra_body={"steps": 2, "seed": 3})
    assert png_size(base64.b64decode(edited.data[0].b64_json)) == (32, 32)

    try:
        client.images.generate(prompt="x", size="huge")
    except openai.BadRequestError as error:
        assert error.body["param"] == "size", error.body
    else:
        raise AssertionError("a bad size was accepted")


def check_a1111(base: str) -> None:
    with urllib.request.urlopen(base + "/sdapi/v1/sd-models", timeout=60) as response:
        models = json.load(response)
    assert [model["model_name"] for model in models] == ["tiny", "tiny-edit"], models

    # What an A1111 front end posts for txt2img (webuiapi's defaults, with our model's sampler).
    status, answer = post_json(base + "/sdapi/v1/txt2img", {
        "prompt": "a red fox", "negative_prompt": "", "styles": [], "seed": 11, "subseed": -1,
        "subseed_strength": 0.0, "sampler_name": "Euler", "batch_size": 1, "n_iter": 1, "steps": 2,
        "cfg_scale": 4.0, "width": 32, "height": 32, "restore_faces": False, "tiling": False,
        "do_not_save_samples": True, "do_not_save_grid": True, "eta": 1.0, "send_images": True,
        "save_images": False, "alwayson_scripts": {}})
    assert status == 200, answer
    assert png_size(base64.b64decode(answer["images"][0])) == (32, 32)
    assert json.loads(answer["info"])["seed"] == 11

    picture = "data:image/png;base64," + base64.b64encode(gradient_png(32, 32)).decode()
    status, answer = post_json(base + "/sdapi/v1/img2img", {
        "init_images": [picture], "mask": picture, "prompt": "a fox", "denoising_strength": 0.6,
        "inpainting_fill": 1, "mask_blur": 2, "inpaint_full_res": False, "steps": 2, "seed": 5,
        "sampler_name": "Euler", "width": 32, "height": 32})
    assert status == 200, answer
    assert png_size(base64.b64decode(answer["images"][0])) == (32, 32)

    with urllib.request.urlopen(base + "/sdapi/v1/progress", timeout=60) as response:
        assert json.load(response)["progress"] == 0.0


def main() -> None:
    base = sys.argv[1].rstrip("/")
    check_openai(base)
    check_a1111(base)
    print("the openai SDK and the A1111-style client got what they asked for")


if __name__ == "__main__":
    main()
