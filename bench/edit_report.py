"""Prints one line `RESULT {json}` with the figures of one `canvas edit`, `canvas inpaint` or `canvas generate`
run (text-to-image or img2img), in the terms of the diffusers reference scripts (bench/reference/
pipeline_timing.py): s/step (the median step after the first), the first step, the time before the steps
(plan, prompt encoding, the pictures' VAE encoding), after them (VAE decode) and end to end without loading,
plus loading, the memory plan and the device peaks.

The steps and phases come from the --profile JSON ("step" phases and the top-level ones); the log's
"Time:" line (each phase's seconds and the total, load included), its plan lines and its "Memory:" line are
kept as printed. Standard library only, so it runs anywhere.

Usage: edit_report.py LABEL LOG PROFILE.json [--rc CODE] [--wall SECONDS] [--set KEY=JSON ...]
"""
import argparse
import json
import os
import re
import statistics


def time_line(log_lines):
    """{"load": 38.9, "text_encode": 1.5, ..., "total": 66.9} from "Time: load 38.90 s, text encode 1.48 s, ...":
    the last such line, the last image's of a batch."""
    for line in reversed(log_lines):
        if line.startswith("Time:"):
            return {name.strip().replace(" ", "_").lower(): float(value)
                    for name, value in re.findall(r"([A-Za-z][A-Za-z ]*?) ([0-9.]+) s\b", line[len("Time:"):])}
    return {}


def plan_lines(log_lines):
    """The plan as printed: its "plan:" line and the indented lines under it."""
    lines, inside = [], False
    for line in log_lines:
        if line.startswith("plan"):
            inside = True
        elif not line.startswith("  "):
            inside = False
        if inside:
            lines.append(line)
    return lines


def profile_figures(profile):
    phases = profile["phases"]
    steps = sorted((p for p in phases if p["name"] == "step"), key=lambda p: p["attributes"].get("step", 0))
    top = [p for p in phases if p["depth"] == 0]
    figures = {"phases_s": {}}
    for phase in top:
        figures["phases_s"][phase["name"]] = figures["phases_s"].get(phase["name"], 0.0) + phase["end"] - phase["start"]
    figures["device_peak_allocated_GiB"] = [b / 2**30 for b in profile["summary"]["peak_allocated"]]
    figures["device_peak_used_GiB"] = [None if b is None else b / 2**30 for b in profile["summary"]["peak_used"]]
    if not steps:
        return figures
    per_step = [p["end"] - p["start"] for p in steps]
    steady = sorted(per_step[1:] or per_step)
    job = [p for p in top if p["name"] != "load"]
    job_start = min(p["start"] for p in job)
    job_end = max(p["end"] for p in job)
    figures.update({
        "s_per_step": steady[len(steady) // 2],
        "first_step_s": per_step[0],
        "per_step_s": per_step,
        "mean_step_after_first_s": statistics.mean(steady),
        "before_steps_s": steps[0]["start"] - job_start,
        "after_steps_s": job_end - steps[-1]["end"],
        "e2e_s": job_end - job_start,
    })
    return figures


def main():
    p = argparse.ArgumentParser()
    p.add_argument("label")
    p.add_argument("log")
    p.add_argument("profile")
    p.add_argument("--rc", type=int, default=0)
    p.add_argument("--wall", type=float, help="the process's wall time, load included")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="another field of the result")
    a = p.parse_args()
    log_lines = open(a.log, errors="replace").read().splitlines() if os.path.exists(a.log) else []
    result = {"tool": "canvas", "config": a.label, "rc": a.rc}
    for item in a.set:
        key, value = item.split("=", 1)
        result[key] = json.loads(value)
    timings = time_line(log_lines)
    result["time_line_s"] = timings
    if "total" in timings:
        result["total_with_load_s"] = timings["total"]
        result["load_s"] = timings.get("load")
    if a.wall is not None:
        result["wall_s"] = a.wall
    if os.path.exists(a.profile):
        result.update(profile_figures(json.load(open(a.profile))))
    result["plan"] = plan_lines(log_lines)
    result["memory_line"] = next((line for line in log_lines if line.startswith("Memory:")), None)
    if a.rc != 0 or "s_per_step" not in result:
        result["error"] = next((line for line in reversed(log_lines) if "error" in line.lower()),
                               log_lines[-1] if log_lines else "no log")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
