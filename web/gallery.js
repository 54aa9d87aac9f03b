// The Gallery tab: past jobs from the history (GET /v1/jobs), newest first; a job's metadata, its settings
// reused, its image sent to Edit or Inpaint, downloaded, or the job deleted (DELETE /v1/history/{id}).

import { api, imageUrl } from "./api.js";
import { readDataUrl } from "./pictures.js";

const $ = (id) => document.getElementById(id);

export class Gallery {
  // actions: useSettings(parameters), sendTo(task, dataUrl), onError(error)
  constructor(actions) {
    this.actions = actions;
    this.selected = null;
    this.objectUrls = []; // the shown images' bytes, let go of at each refresh
    $("gallery-refresh").addEventListener("click", () => this.refresh().catch(actions.onError));
    $("detail-use").addEventListener("click", () => this.selected && actions.useSettings(this.selected.job.parameters));
    $("detail-edit").addEventListener("click", () => this.send("edit").catch(actions.onError));
    $("detail-inpaint").addEventListener("click", () => this.send("inpaint").catch(actions.onError));
    $("detail-delete").addEventListener("click", () => this.remove().catch(actions.onError));
  }

  async refresh() {
    // "loading" until the tiles are replaced (the browser tests wait for "ready").
    $("gallery").dataset.state = "loading";
    const { jobs } = await api("GET", "/v1/jobs?limit=100");
    for (const url of this.objectUrls.splice(0)) URL.revokeObjectURL(url);
    this.selected = null;
    $("gallery-detail").hidden = true;
    const tiles = [];
    for (const job of jobs) {
      for (const [index, image] of (job.images || []).entries()) {
        const tile = document.createElement("button");
        tile.type = "button";
        tile.className = "tile";
        tile.dataset.job = job.id;
        const picture = document.createElement("img");
        picture.alt = `${job.task}: ${job.parameters?.prompt ?? job.id}`;
        picture.title = picture.alt;
        imageUrl(image.url).then(
          (url) => {
            this.objectUrls.push(url);
            picture.src = url;
          },
          () => (picture.alt = `${picture.alt} (image gone)`),
        );
        tile.append(picture);
        tile.addEventListener("click", () => this.select(job, index, picture));
        tiles.push(tile);
      }
      if (!job.images?.length && job.state !== "queued" && job.state !== "running") {
        const tile = document.createElement("button");
        tile.type = "button";
        tile.className = "tile empty";
        tile.dataset.job = job.id;
        tile.textContent = `${job.state}: ${job.parameters?.prompt ?? job.id}`;
        tile.addEventListener("click", () => this.select(job, -1, null));
        tiles.push(tile);
      }
    }
    $("gallery").replaceChildren(...tiles);
    if (tiles.length === 0) $("gallery").textContent = "No jobs yet.";
    $("gallery").dataset.state = "ready";
  }

  select(job, index, picture) {
    this.selected = { job, index, picture };
    $("gallery-detail").hidden = false;
    const hasImage = index >= 0 && picture?.src;
    $("detail-image").hidden = !hasImage;
    if (hasImage) $("detail-image").src = picture.src;
    $("detail-download").hidden = !hasImage;
    if (hasImage) {
      $("detail-download").href = picture.src;
      $("detail-download").download = `${job.id}-${index}.png`;
    }
    for (const id of ["detail-edit", "detail-inpaint"]) $(id).disabled = !hasImage;
    $("detail-use").disabled = !job.parameters || Object.keys(job.parameters).length === 0;
    const seconds = job.finished_at && job.started_at ? (job.finished_at - job.started_at).toFixed(1) : null;
    const lines = [
      `job ${job.id}: ${job.task} on ${job.model}, ${job.state}`,
      `created ${new Date(job.created_at * 1000).toLocaleString()}` + (seconds ? `, ran ${seconds} s` : ""),
    ];
    if (job.error) lines.push(`error: ${job.error}`);
    lines.push("", "parameters:", JSON.stringify(job.parameters ?? {}, null, 2));
    if (job.report && Object.keys(job.report).length) lines.push("", "report:", JSON.stringify(job.report, null, 2));
    $("detail-meta").textContent = lines.join("\n");
  }

  async send(task) {
    const { picture } = this.selected || {};
    if (!picture?.src) return;
    const blob = await (await fetch(picture.src)).blob();
    await this.actions.sendTo(task, await readDataUrl(blob));
  }

  async remove() {
    if (!this.selected) return;
    const { job } = this.selected;
    if (!window.confirm(`Delete job ${job.id} and its images from the server?`)) return;
    await api("DELETE", `/v1/history/${job.id}`);
    await this.refresh();
  }
}
