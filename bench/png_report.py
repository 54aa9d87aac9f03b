"""Prints one JSON line of the figures `canvas generate` stored in a PNG's "canvas" iTXt chunk: the
memory plan, per-step times, device peak and host peak RSS. Standard library only, so it runs anywhere.
Usage: png_report.py IMAGE.png [LABEL]"""
import json
import struct
import sys
import zlib


def canvas_metadata(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path} is not a PNG")
    offset = 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        offset += 12 + length
        if kind != b"iTXt":
            continue
        keyword, rest = body.split(b"\0", 1)
        if keyword != b"canvas":
            continue
        compressed, _method = rest[0], rest[1]
        _language, _translated, text = rest[2:].split(b"\0", 2)
        return json.loads(zlib.decompress(text) if compressed else text)
    raise SystemExit(f"{path} has no canvas metadata")


def main():
    meta = canvas_metadata(sys.argv[1])
    steps = meta["timings_s"]["per_step"]
    # The first step also builds the GEMM and attention plans; the steady state is the rest.
    steady = sorted(steps[1:] or steps)
    plan = meta["memory_plan"]
    report = {
        "label": sys.argv[2] if len(sys.argv) > 2 else sys.argv[1],
        "strategy": plan["strategy"],
        "chosen": plan["chosen"],
        "s_per_step": steady[len(steady) // 2],
        "first_step_s": steps[0],
        "predicted_s_per_step": next(c["predicted_pass_s"] for c in plan["components"] if c["name"] == "transformer"),
        "device_budget_GiB": plan["device_budget_bytes"] / 2**30,
        "device_peak_GiB": meta["memory"]["device_peak_bytes"] / 2**30,
        "predicted_peak_GiB": plan["predicted_peak_bytes"] / 2**30,
        "host_peak_rss_GiB": meta["memory"]["host_peak_rss_bytes"] / 2**30,
        "streamed_GiB": meta["memory"]["transformer_bytes_streamed"] / 2**30,
        "timings_s": {k: v for k, v in meta["timings_s"].items() if k != "per_step"},
        "plan": plan["lines"],
    }
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
