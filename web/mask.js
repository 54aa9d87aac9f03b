// The Inpaint tab's mask painter: a canvas over the picture, painted with a round brush (or erased);
// cleared and inverted. The mask sent is a black and white PNG of the picture's size: white is repainted.

import { pictureSize } from "./pictures.js";

const PAINT = "rgba(255, 40, 120, 1)";

export class MaskPainter {
  constructor(pictureCanvas, maskCanvas, brushInput, eraserInput) {
    this.pictureCanvas = pictureCanvas;
    this.maskCanvas = maskCanvas;
    // The mask is read back for every invert and run.
    this.maskContext = maskCanvas.getContext("2d", { willReadFrequently: true });
    this.brushInput = brushInput;
    this.eraserInput = eraserInput;
    this.pictureUrl = null;
    this.last = null;
    maskCanvas.addEventListener("pointerdown", (event) => {
      maskCanvas.setPointerCapture(event.pointerId);
      this.last = this.point(event);
      this.stroke(this.last, this.last);
    });
    maskCanvas.addEventListener("pointermove", (event) => {
      if (!this.last) return;
      const next = this.point(event);
      this.stroke(this.last, next);
      this.last = next;
    });
    for (const type of ["pointerup", "pointercancel"]) maskCanvas.addEventListener(type, () => (this.last = null));
  }

  async load(url) {
    const { width, height, image } = await pictureSize(url);
    this.pictureUrl = url;
    for (const canvas of [this.pictureCanvas, this.maskCanvas]) {
      canvas.width = width;
      canvas.height = height;
    }
    this.pictureCanvas.getContext("2d").drawImage(image, 0, 0);
  }

  // The pointer's place in the canvas's pixels (the canvas is shown scaled).
  point(event) {
    const box = this.maskCanvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * this.maskCanvas.width) / box.width,
      y: ((event.clientY - box.top) * this.maskCanvas.height) / box.height,
      scale: this.maskCanvas.width / box.width,
    };
  }

  stroke(from, to) {
    const context = this.maskContext;
    context.globalCompositeOperation = this.eraserInput.checked ? "destination-out" : "source-over";
    context.strokeStyle = PAINT;
    context.lineCap = "round";
    context.lineJoin = "round";
    context.lineWidth = Number(this.brushInput.value) * to.scale;
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x + 0.01, to.y);
    context.stroke();
  }

  clear() {
    this.maskContext.clearRect(0, 0, this.maskCanvas.width, this.maskCanvas.height);
  }

  invert() {
    const context = this.maskContext;
    const { width, height } = this.maskCanvas;
    const pixels = context.getImageData(0, 0, width, height);
    const data = pixels.data;
    for (let index = 0; index < data.length; index += 4) {
      const painted = data[index + 3] >= 128;
      [data[index], data[index + 1], data[index + 2], data[index + 3]] = painted ? [0, 0, 0, 0] : [255, 40, 120, 255];
    }
    context.putImageData(pixels, 0, 0);
  }

  painted() {
    const { width, height } = this.maskCanvas;
    if (!width || !height) return false;
    const data = this.maskContext.getImageData(0, 0, width, height).data;
    for (let index = 3; index < data.length; index += 4) if (data[index] >= 128) return true;
    return false;
  }

  // The mask as PNG bytes: white where painted, black elsewhere.
  async png() {
    const { width, height } = this.maskCanvas;
    const mask = document.createElement("canvas");
    mask.width = width;
    mask.height = height;
    const context = mask.getContext("2d");
    const painted = this.maskContext.getImageData(0, 0, width, height).data;
    const pixels = context.createImageData(width, height);
    for (let index = 0; index < painted.length; index += 4) {
      const value = painted[index + 3] >= 128 ? 255 : 0;
      pixels.data.set([value, value, value, 255], index);
    }
    context.putImageData(pixels, 0, 0);
    const blob = await new Promise((resolve) => mask.toBlob(resolve, "image/png"));
    return new Uint8Array(await blob.arrayBuffer());
  }
}

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function bytesDataUrl(bytes, type) {
  let text = "";
  for (let index = 0; index < bytes.length; index += 0x8000)
    text += String.fromCharCode(...bytes.subarray(index, index + 0x8000));
  return `data:${type};base64,${btoa(text)}`;
}
