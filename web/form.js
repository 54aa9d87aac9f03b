// The job form shared by the Generate, Edit, Inpaint and img2img tabs: its fields, the pictures of each
// tab, and the request it makes (the native API's fields, src/app/job_spec.h).

import { addRemoveButton, api, guarded } from "./api.js";
import { MaskPainter, bytesDataUrl, sha256Hex } from "./mask.js";
import { PictureList, attachDropZone, pictureSize, readDataUrl } from "./pictures.js";

const $ = (id) => document.getElementById(id);
export const JOB_TASKS = ["generate", "edit", "inpaint", "img2img"];

export class JobForm {
  constructor() {
    this.task = "generate";
    this.models = [];
    this.loras = [];
    this.img2imgPicture = null;
    this.editPictures = new PictureList($("edit-pictures"), 3, (pictures) => this.pictureChanged(pictures[0]));
    this.mask = new MaskPainter($("mask-picture"), $("mask-canvas"), $("brush-size"), $("eraser"));
    const picker = $("file-picker");
    attachDropZone($("edit-drop"), picker, guarded((files) => this.takeFiles("edit", files)));
    attachDropZone($("img2img-drop"), picker, guarded((files) => this.takeFiles("img2img", files)));
    attachDropZone($("inpaint-drop"), picker, guarded((files) => this.takeFiles("inpaint", files)));
    $("mask-clear").addEventListener("click", () => this.mask.clear());
    $("mask-invert").addEventListener("click", () => this.mask.invert());
    $("seed-random").addEventListener("click", () => ($("seed").value = Math.floor(Math.random() * 2 ** 32)));
    $("lora-add").addEventListener("click", () => this.addLora($("lora-name").value, $("lora-strength").value));
  }

  async loadChoices() {
    const [models, loras] = await Promise.all([api("GET", "/v1/models"), api("GET", "/v1/loras")]);
    this.models = models.models;
    $("model").replaceChildren(...this.models.map((model) => new Option(model.id, model.id)));
    $("lora-name").replaceChildren(...loras.loras.map((name) => new Option(name, name)));
    $("lora-add").disabled = loras.loras.length === 0;
    if (loras.loras.length === 0) $("lora-name").append(new Option("no LoRAs on the server", ""));
    this.fitModel();
  }

  // Edit needs a model that edits; the other tabs prefer one that generates.
  fitModel() {
    const wantsEdits = this.task === "edit";
    const current = this.models.find((model) => model.id === $("model").value);
    if (!current || current.edits === wantsEdits) return;
    const better = this.models.find((model) => model.edits === wantsEdits);
    if (better) $("model").value = better.id;
  }

  setTask(task) {
    this.task = task;
    for (const section of document.querySelectorAll(".task-only"))
      section.hidden = !section.dataset.task.split(" ").includes(task);
    this.fitModel();
  }

  async takeFiles(task, files) {
    if (files.length === 0) throw new Error("no picture in what was given (only image files are read)");
    const urls = await Promise.all(files.map(readDataUrl));
    await this.setPictures(task, urls);
  }

  async setPictures(task, urls) {
    if (task === "edit") {
      this.editPictures.add(urls);
    } else if (task === "img2img") {
      this.img2imgPicture = urls[0];
      $("img2img-picture").src = urls[0];
      $("img2img-picture").hidden = false;
      await this.pictureChanged(urls[0]);
    } else if (task === "inpaint") {
      await this.mask.load(urls[0]);
      $("mask-painter").hidden = false;
      await this.pictureChanged(urls[0]);
    }
  }

  // With "From picture", the size follows the (first) picture.
  async pictureChanged(url) {
    if (!url || !$("size-auto").checked) return;
    const { width, height } = await pictureSize(url);
    $("width").value = width;
    $("height").value = height;
  }

  addLora(name, strength) {
    if (!name) return;
    const item = document.createElement("li");
    item.dataset.name = name;
    item.dataset.strength = Number(strength);
    item.textContent = `${name}: ${Number(strength)}`;
    addRemoveButton(item, "remove");
    $("lora-list").append(item);
  }

  // The request of the active tab, and the SHA-256 of the mask it sends (the server records it).
  async request() {
    const number = (id) => Number($(id).value);
    const seed = $("seed-lock").checked ? number("seed") : -1;
    const request = {
      task: this.task,
      model: $("model").value,
      prompt: $("prompt").value,
      steps: number("steps"),
      cfg_scale: number("cfg_scale"),
      batch_count: number("batch_count"),
      seed,
      strategy: $("strategy").value,
      width: number("width"),
      height: number("height"),
    };
    if (!request.prompt.trim()) throw new Error("write a prompt first");
    if ($("negative_prompt").value) request.negative_prompt = $("negative_prompt").value;
    if ($("preset").value) request.preset = $("preset").value;
    const loras = Array.from($("lora-list").children, (item) => ({
      name: item.dataset.name,
      strength: Number(item.dataset.strength),
    }));
    if (loras.length) request.loras = loras;
    let maskSha256 = null;
    if (this.task === "edit") {
      if (!this.editPictures.pictures.length) throw new Error("an edit needs 1 to 3 pictures: drop them in the Edit tab");
      request.images = this.editPictures.pictures;
    } else if (this.task === "img2img") {
      if (!this.img2imgPicture) throw new Error("img2img needs a picture: drop one in its tab");
      request.image = this.img2imgPicture;
      request.strength = number("strength");
    } else if (this.task === "inpaint") {
      if (!this.mask.pictureUrl) throw new Error("inpainting needs a picture: drop one in its tab");
      request.image = this.mask.pictureUrl;
      request.mask_blur = number("mask_blur");
      const margins = ["left", "top", "right", "bottom"].map((side) => number(`outpaint-${side}`));
      if (margins.some((margin) => margin > 0)) {
        request.outpaint = margins;
        // Outpainting sizes the result from the picture and its margins.
        delete request.width;
        delete request.height;
      }
      if (this.mask.painted()) {
        const png = await this.mask.png();
        request.mask = bytesDataUrl(png, "image/png");
        maskSha256 = await sha256Hex(png);
      } else if (!request.outpaint) {
        throw new Error("paint the part to repaint on the picture (or give outpaint margins)");
      }
    }
    return { request, maskSha256, maskUrl: request.mask ?? null };
  }

  // Fills the form from a job's recorded parameters ("use these settings").
  applySettings(parameters) {
    const set = (id, value) => {
      if (value !== undefined && value !== null) $(id).value = value;
    };
    if (this.models.some((model) => model.id === parameters.model)) $("model").value = parameters.model;
    set("prompt", parameters.prompt);
    set("negative_prompt", parameters.negative_prompt ?? "");
    for (const id of ["steps", "cfg_scale", "batch_count", "width", "height", "strength", "mask_blur"])
      set(id, parameters[id]);
    set("strategy", parameters.strategy);
    set("preset", parameters.preset ?? "");
    if (parameters.seed !== undefined) {
      $("seed").value = parameters.seed;
      $("seed-lock").checked = true;
    }
    $("lora-list").replaceChildren();
    for (const lora of parameters.loras || []) this.addLora(lora.name.replace(/\.safetensors$/, ""), lora.strength);
  }
}
