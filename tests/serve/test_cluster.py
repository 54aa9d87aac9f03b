"""Drives a cluster of `canvas serve` workers sharing one Redis broker (started by
tests/serve/run_cluster_tests.sh): thirty jobs submitted through all three servers; the third worker killed
with SIGKILL in the middle of a job. Checks that every job ends exactly once, done, with the pixels the
command line makes for its seed; that the killed worker's job ran again on another worker; that a server
shows the progress of a job another worker runs, every job and every worker. Standard library only.

Usage: python3 test_cluster.py CANVAS MODEL VICTIM_PID URL1 URL2 URL3
"""

import base64
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

JOBS = 30
STEPS = 12
WORKERS = ["w1", "w2", "w3"]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def get_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def events(base: str, job: str) -> list[tuple[str, dict]]:
    """The job's events as a server's SSE stream gives them, once it has ended."""
    text = get_bytes(f"{base}/v1/jobs/{job}/events").decode()
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        found.append((fields["event"], json.loads(fields["data"])))
    return found


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and RGB bytes of an 8-bit RGB PNG (no interlace), decoded with zlib alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat, width, height = 8, b"", 0, 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 2), "an RGB PNG of 8-bit channels is expected"
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw, stride, rows, previous = zlib.decompress(idat), width * 3, [], bytearray(width * 3)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - 3] if x >= 3 else 0
            up, up_left = previous[x], previous[x - 3] if x >= 3 else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - up_left
                pick = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - up_left), 2, up_left))
                line[x] = (line[x] + pick[2]) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, b"".join(rows)


def cli_pixels(canvas: str, model: str, seed: int, folder: str) -> bytes:
    output = os.path.join(folder, f"cli-{seed}.png")
    subprocess.run([canvas, "generate", "--model", model, "--prompt", f"a fox {seed}", "--seed", str(seed),
                    "--steps", str(STEPS), "--width", "32", "--height", "32", "--output", output],
                   check=True, capture_output=True)
    with open(output, "rb") as file:
        return png_pixels(file.read())[2]


def main() -> None:
    canvas, model, victim_pid, bases = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    for _ in range(100):
        if len(get_json(bases[0] + "/v1/workers")["workers"]) == 3:
            break
        time.sleep(0.1)
    workers = get_json(bases[0] + "/v1/workers")["workers"]
    assert sorted(worker["name"] for worker in workers) == WORKERS, workers
    assert all(worker["models"] == ["tiny", "tiny-edit"] and worker["device"] == "cpu" and worker["host"] for worker in workers)

    # Through every server in turn: any of them queues for the whole cluster.
    jobs = []
    for index in range(JOBS):
        submitted = post_json(bases[index % 3] + "/v1/jobs", {"prompt": f"a fox {index}", "seed": index,
                                                            "steps": STEPS, "width": 32, "height": 32})
        jobs.append(submitted["id"])

    # The victim is killed once it is in the middle of a job: running, with steps done.
    victim_job = None
    deadline = time.time() + 120
    while victim_job is None and time.time() < deadline:
        for worker in get_json(bases[0] + "/v1/workers")["workers"]:
            if worker["name"] == "w3" and worker.get("job"):
                status = get_json(f"{bases[0]}/v1/jobs/{worker['job']}")
                if status["state"] == "running" and status.get("progress", {}).get("step", 0) >= 1:
                    os.kill(victim_pid, signal.SIGKILL)
                    victim_job = worker["job"]
        time.sleep(0.05)
    assert victim_job, "worker w3 never ran a job"

    deadline = time.time() + 150
    while time.time() < deadline:
        states = [get_json(f"{bases[1]}/v1/jobs/{job}")["state"] for job in jobs]
        if all(state in ("done", "failed", "cancelled") for state in states):
            break
        time.sleep(0.5)
    assert states == ["done"] * JOBS, states

    # Exactly once: one end per job, and the killed worker's job ran again elsewhere.
    ran_on = {}
    for job in jobs:
        seen = events(bases[0], job)
        ends = [data for kind, data in seen if kind == "state" and data["state"] in ("done", "failed", "cancelled")]
        assert len(ends) == 1, (job, seen)
        ran_on[job] = [data["worker"] for kind, data in seen if kind == "state" and data["state"] == "running"]
        assert ends[0]["worker"] == ran_on[job][-1], (job, seen)
        assert any(kind == "step" for kind, _ in seen), (job, "no progress relayed")
    assert ran_on[victim_job][0] == "w3" and ran_on[victim_job][-1] != "w3", ran_on[victim_job]
    assert set(sum(ran_on.values(), [])) == set(WORKERS), ran_on

    # Progress of a job another worker ran, followed through server w1.
    elsewhere = next(job for job in jobs if ran_on[job] == ["w2"])
    steps = [data["step"] for kind, data in events(bases[0], elsewhere) if kind == "step"]
    assert steps == list(range(1, STEPS + 1)), steps

    # Every job in every surviving server's list, and the killed worker gone from the workers once its
    # heartbeat expired.
    for base in bases[:2]:
        listed = {job["id"]: job["state"] for job in get_json(base + "/v1/jobs?limit=100")["jobs"]}
        assert all(listed.get(job) == "done" for job in jobs), listed
    for _ in range(100):
        names = sorted(worker["name"] for worker in get_json(bases[1] + "/v1/workers")["workers"])
        if names == ["w1", "w2"]:
            break
        time.sleep(0.1)
    assert names == ["w1", "w2"], names

    # A job cancelled through a server other than the one it was submitted to, while it runs elsewhere.
    # (Seconds of work on any machine: 400 steps of a 128² image, where a cancellation is noticed within one.)
    long = post_json(bases[0] + "/v1/jobs", {"prompt": "a long fox", "steps": 200, "batch_count": 2,
                                             "width": 128, "height": 128})["id"]
    deadline = time.time() + 60
    while get_json(f"{bases[1]}/v1/jobs/{long}").get("progress", {}).get("step", 0) < 1 and time.time() < deadline:
        time.sleep(0.05)
    cancel = urllib.request.Request(f"{bases[1]}/v1/jobs/{long}", method="DELETE")
    urllib.request.urlopen(cancel, timeout=60).close()
    while get_json(f"{bases[0]}/v1/jobs/{long}")["state"] == "running" and time.time() < deadline:
        time.sleep(0.1)
    cancelled = get_json(f"{bases[0]}/v1/jobs/{long}")
    assert cancelled["state"] == "cancelled", {key: cancelled.get(key) for key in ("state", "error", "progress")}

    # The right pixels, served by a server that did not run the job: the command line's for the seed.
    with tempfile.TemporaryDirectory() as folder:
        expected = {}
        for index in sorted({0, jobs.index(victim_job), JOBS - 1}):
            job = jobs[index]
            server = next(base for base, name in zip(bases, WORKERS) if name != ran_on[job][-1] and name != "w3")
            served = png_pixels(get_bytes(f"{server}/v1/jobs/{job}/images/0"))
            assert served[:2] == (32, 32), served[:2]
            expected[index] = cli_pixels(canvas, model, index, folder)
            assert served[2] == expected[index], (job, "pixels differ from the CLI's")
        assert expected[0] != expected[JOBS - 1], "the seed does not move the pixels: the comparison proves nothing"
    print(f"cluster: {JOBS} jobs done once each over 3 workers; {victim_job} ran again on {ran_on[victim_job][-1]} "
          "after w3 was killed")


if __name__ == "__main__":
    main()
