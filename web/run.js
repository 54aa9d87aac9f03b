// Running a job: submits it, follows its events (state, plan, step with ETA, preview, recovery), shows its
// images, and cancels it on request.

import { api, imageUrl, streamEvents } from "./api.js";

const $ = (id) => document.getElementById(id);

function formatSeconds(seconds) {
  if (!(seconds >= 0)) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s left`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s left`;
}

export class JobRunner {
  // onEnd(status) is told of each job's end; onRecovery(text) of each recovery (the memory chart marks it).
  constructor({ onEnd, onRecovery }) {
    this.onEnd = onEnd;
    this.onRecovery = onRecovery;
    this.jobId = null;
    $("cancel").addEventListener("click", () => this.cancel());
  }

  log(text) {
    $("job-log").textContent += `${text}\n`;
  }

  setState(text) {
    $("job-state").textContent = text;
  }

  async run(request) {
    $("job-log").textContent = "";
    $("results").replaceChildren();
    $("preview").hidden = true;
    $("job-eta").textContent = "";
    $("job-progress").value = 0;
    this.setState("Submitting…");
    const job = await api("POST", "/v1/jobs", request);
    this.jobId = job.id;
    $("cancel").hidden = false;
    this.setState(`Job ${job.id}: ${job.state}`);
    try {
      await streamEvents(job.events, (type, data) => this.event(job.id, type, data));
    } finally {
      $("cancel").hidden = true;
    }
    const status = await api("GET", job.url);
    this.jobId = null;
    await this.finished(status);
    return status;
  }

  event(id, type, data) {
    if (type === "state") {
      this.setState(`Job ${id}: ${data.state}`);
      if (data.error) this.log(`error: ${data.error}`);
    } else if (type === "note") {
      this.log(data.text);
    } else if (type === "plan") {
      this.log(`memory plan (image ${data.image}):\n  ${data.lines.join("\n  ")}`);
    } else if (type === "step") {
      const done = (data.image - 1) * data.steps + data.step;
      $("job-progress").value = done / (data.images * data.steps);
      const batch = data.images > 1 ? `image ${data.image}/${data.images}, ` : "";
      this.setState(`Job ${id}: ${batch}step ${data.step}/${data.steps}`);
      $("job-eta").textContent = formatSeconds(data.eta_s);
    } else if (type === "preview") {
      $("preview").src = `data:image/png;base64,${data.png_base64}`;
      $("preview").hidden = false;
    } else if (type === "recovery") {
      this.log(`recovery: ${data.text}`);
      this.onRecovery(data.text);
    }
  }

  async finished(status) {
    const seconds = status.finished_at && status.started_at ? ` in ${(status.finished_at - status.started_at).toFixed(1)} s` : "";
    this.setState(`Job ${status.id}: ${status.state}${seconds}`);
    if (status.error) this.log(`error: ${status.error}`);
    if (status.state === "done") {
      $("job-progress").value = 1;
      $("job-eta").textContent = "";
      $("preview").hidden = true;
      for (const [index, image] of (status.images || []).entries()) {
        const link = document.createElement("a");
        const picture = document.createElement("img");
        picture.src = await imageUrl(image.url);
        picture.alt = `image ${index + 1}` + (image.seed !== undefined ? `, seed ${image.seed}` : "");
        picture.title = picture.alt;
        picture.className = "result";
        link.href = picture.src;
        link.download = `${status.id}-${index}.png`;
        link.append(picture);
        $("results").append(link);
      }
    }
    this.onEnd(status);
  }

  async cancel() {
    if (!this.jobId) return;
    await api("DELETE", `/v1/jobs/${this.jobId}`);
    this.log("cancel requested");
  }
}

// The Queue tab: jobs queued and running, each with a cancel button; a cluster's workers (serve --queue),
// each with its host, device, models and the job it runs.
export async function refreshQueue(onError) {
  const [queued, running, cluster] = await Promise.all([
    api("GET", "/v1/jobs?state=queued&limit=100"),
    api("GET", "/v1/jobs?state=running&limit=100"),
    api("GET", "/v1/workers"),
  ]);
  $("workers").hidden = cluster.workers.length === 0;
  $("worker-rows").replaceChildren(...cluster.workers.map((worker) => {
    const row = document.createElement("tr");
    for (const text of [worker.name, worker.host, worker.device, worker.models.join(", "), worker.job ?? "idle"]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
  const jobs = [...running.jobs, ...queued.jobs];
  const rows = jobs.map((job) => {
    const row = document.createElement("tr");
    const progress = job.progress ? ` ${job.progress.step}/${job.progress.steps}` : "";
    for (const text of [job.id, job.state + progress, job.task, job.model, job.parameters?.prompt ?? ""]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const cell = document.createElement("td");
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.addEventListener("click", () =>
      api("DELETE", `/v1/jobs/${job.id}`).then(() => refreshQueue(onError)).catch(onError),
    );
    cell.append(cancel);
    row.append(cell);
    return row;
  });
  if (rows.length === 0) {
    const row = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = 6;
    cell.textContent = "No job is queued or running.";
    row.append(cell);
    rows.push(row);
  }
  $("queue-rows").replaceChildren(...rows);
}
