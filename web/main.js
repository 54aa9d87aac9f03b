// The page's wiring: tabs, Ctrl+Enter, pasted pictures, and the test hook the browser tests read.

import { guarded, showError } from "./api.js";
import { JOB_TASKS, JobForm } from "./form.js";
import { Gallery } from "./gallery.js";
import { MemoryPanel } from "./memory.js";
import { imageFiles } from "./pictures.js";
import { JobRunner, refreshQueue } from "./run.js";

const $ = (id) => document.getElementById(id);

// What the browser tests read: each job's end, and the last mask sent (base64 PNG) with its SHA-256.
window.canvasTest = { jobs: [], lastMaskSha256: null, lastMaskPng: null };

const form = new JobForm();
const memory = new MemoryPanel();
const gallery = new Gallery({
  useSettings: (parameters) => {
    form.applySettings(parameters);
    showTab(JOB_TASKS.includes(parameters.task) ? parameters.task : "generate");
  },
  sendTo: async (task, dataUrl) => {
    if (task === "edit") form.editPictures.set([dataUrl]);
    else await form.setPictures(task, [dataUrl]);
    showTab(task);
  },
  onError: showError,
});
const runner = new JobRunner({
  onEnd: (status) => {
    window.canvasTest.jobs.push({ id: status.id, state: status.state, images: (status.images || []).length });
    if (status.parameters?.seed !== undefined && !$("seed-lock").checked) $("seed").value = status.parameters.seed;
  },
  onRecovery: (text) => memory.markRecovery(text),
});

let queueTimer = null; // the Queue tab refreshes itself while shown

function showTab(tab) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === tab);
  const isJob = JOB_TASKS.includes(tab);
  $("workspace").hidden = !isJob;
  $("gallery-panel").hidden = tab !== "gallery";
  $("queue-panel").hidden = tab !== "queue";
  $("memory-panel").hidden = tab !== "memory";
  if (isJob) form.setTask(tab);
  if (tab === "gallery") gallery.refresh().catch(showError);
  clearInterval(queueTimer);
  if (tab === "queue") {
    const refresh = () => refreshQueue(showError).catch((error) => {
      clearInterval(queueTimer);
      showError(error);
    });
    refresh();
    queueTimer = setInterval(refresh, 2000);
  }
  if (tab === "memory") memory.start(showError);
  else memory.stop();
}

let running = false;
const run = guarded(async () => {
  if (running) throw new Error("a job of this page is running: wait for it or cancel it");
  // Ctrl+Enter skips the browser's own checks of the fields that a click on Run makes.
  if (!$("job-form").reportValidity()) return;
  const { request, maskSha256, maskUrl } = await form.request();
  window.canvasTest.lastMaskSha256 = maskSha256;
  window.canvasTest.lastMaskPng = maskUrl?.split(",")[1] ?? null;
  running = true;
  $("run").disabled = true;
  try {
    await runner.run(request);
  } finally {
    running = false;
    $("run").disabled = false;
  }
});

for (const button of document.querySelectorAll("#tabs button"))
  button.addEventListener("click", () => showTab(button.dataset.tab));
$("job-form").addEventListener("submit", (event) => {
  event.preventDefault();
  run();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !$("workspace").hidden) {
    event.preventDefault();
    run();
  }
});
// A pasted picture goes to the tab shown (Generate has none: it opens img2img).
document.addEventListener(
  "paste",
  guarded(async (event) => {
    const files = imageFiles(event.clipboardData?.files);
    if (files.length === 0) return;
    event.preventDefault();
    const task = form.task === "generate" ? "img2img" : form.task;
    if ($("workspace").hidden || form.task === "generate") showTab(task);
    await form.takeFiles(task, files);
  }),
);
$("queue-refresh").addEventListener("click", () => refreshQueue(showError).catch(showError));
// Any error a handler let through shows in the page too.
window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  showError(event.reason);
});

showTab("generate");
form.loadChoices().then(() => (window.canvasTest.ready = true), showError);
