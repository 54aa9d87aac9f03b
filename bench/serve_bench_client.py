"""Drives a running `canvas serve` for bench/run_serve_bench.sh and prints `RESULT {json}` lines:
- warm: the first job on a model (loading it and placing its weights) and the second, the same settings;
- jobs per minute: --jobs jobs of --size submitted at once, from the first submission to the last image;
- another model sharing the text encoder and VAE: its first job, which components it took over, and the
  device memory with both models loaded (GET /v1/memory).

  python3 bench/serve_bench_client.py URL --model a --other-model b --jobs 10 --size 1024 --steps 8
"""
import argparse
import json
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("url")
p.add_argument("--model", required=True)
p.add_argument("--other-model", required=True)
p.add_argument("--jobs", type=int, default=10)
p.add_argument("--size", type=int, default=1024)
p.add_argument("--steps", type=int, default=8)
p.add_argument("--prompt", default="a lighthouse on a cliff at dusk, watercolor")
a = p.parse_args()


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(a.url + path, data, {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=900) as response:
        return json.load(response)


def submit(model, seed, size=None):
    return call("POST", "/v1/jobs", {"model": model, "prompt": a.prompt, "width": size or a.size,
                                      "height": size or a.size, "steps": a.steps, "cfg_scale": 1.0,
                                      "seed": seed})["id"]


def wait(job_id):
    while True:
        job = call("GET", f"/v1/jobs/{job_id}")
        if job["state"] in ("done", "failed", "cancelled"):
            if job["state"] != "done":
                raise SystemExit(f"job {job_id} {job['state']}: {job.get('error')}")
            return job
        time.sleep(0.05)


def timed_job(model, seed, size=None):
    start = time.perf_counter()
    job = wait(submit(model, seed, size))
    report = job["report"]["images"][0]
    return {"wall_s": time.perf_counter() - start, "total_s": report["total_s"], "load_s": report["load_s"],
            "phases_s": report["phases_s"], "reused_components": report["reused_components"],
            "bytes_streamed": report["bytes_streamed"], "device_peak_bytes": report["device_peak_bytes"]}


def result(config, **figures):
    print("RESULT " + json.dumps({"tool": "canvas-serve", "config": config, "size": a.size, "steps": a.steps,
                                  **figures}), flush=True)


result("serve_first_job", **timed_job(a.model, 0))
result("serve_second_job", **timed_job(a.model, 1))
result("serve_other_size", **timed_job(a.model, 2, size=a.size + 256))
start = time.perf_counter()
ids = [submit(a.model, 100 + i) for i in range(a.jobs)]
jobs = [wait(job_id) for job_id in ids]
total = time.perf_counter() - start
result(f"serve_{a.size}", jobs=a.jobs, jobs_per_minute=60 * a.jobs / total,
       image_s=[job["report"]["images"][0]["total_s"] for job in jobs])
result("serve_other_model_first_job", **timed_job(a.other_model, 3))
memory = call("GET", "/v1/memory")
result("serve_memory", models=memory["models"], device=memory["device"])
