// Pictures a job reads: dropped, pasted or chosen files, read as data URLs; the Edit tab's ordered list.

export function readDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`cannot read ${blob.name || "the picture"}: ${reader.error}`));
    reader.readAsDataURL(blob);
  });
}

export function imageFiles(list) {
  return Array.from(list || []).filter((file) => file.type.startsWith("image/"));
}

// The zone takes dropped files and opens the shared file picker from its "choose" button; onFiles gets
// the image files (others are ignored).
export function attachDropZone(zone, picker, onFiles) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    onFiles(imageFiles(event.dataTransfer.files));
  });
  zone.querySelector(".pick").addEventListener("click", () => {
    picker.onchange = () => {
      onFiles(imageFiles(picker.files));
      picker.value = "";
    };
    picker.click();
  });
}

// The Edit tab's pictures, in the prompt's order ("Picture 1/2/3"): added, moved up or down, removed.
export class PictureList {
  constructor(list, limit, onChange) {
    this.list = list;
    this.limit = limit;
    this.onChange = onChange;
    this.pictures = [];
  }

  add(dataUrls) {
    const room = this.limit - this.pictures.length;
    if (dataUrls.length > room)
      throw new Error(`an edit takes at most ${this.limit} pictures: ${dataUrls.length - room} were left out`);
    this.pictures.push(...dataUrls);
    this.render();
  }

  set(dataUrls) {
    this.pictures = [];
    this.add(dataUrls);
  }

  move(index, by) {
    const target = index + by;
    if (target < 0 || target >= this.pictures.length) return;
    [this.pictures[index], this.pictures[target]] = [this.pictures[target], this.pictures[index]];
    this.render();
  }

  remove(index) {
    this.pictures.splice(index, 1);
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.pictures.map((url, index) => {
        const item = document.createElement("li");
        const image = document.createElement("img");
        image.src = url;
        image.alt = `Picture ${index + 1}`;
        const label = document.createElement("span");
        label.textContent = `Picture ${index + 1}`;
        item.append(image, label);
        for (const [text, title, action] of [
          ["↑", "earlier", () => this.move(index, -1)],
          ["↓", "later", () => this.move(index, 1)],
          ["×", "remove", () => this.remove(index)],
        ]) {
          const button = document.createElement("button");
          button.type = "button";
          button.textContent = text;
          button.title = title;
          button.addEventListener("click", action);
          item.append(button);
        }
        return item;
      }),
    );
    this.onChange(this.pictures);
  }
}

// The natural size of a picture given as a URL.
export function pictureSize(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve({ width: image.naturalWidth, height: image.naturalHeight, image });
    image.onerror = () => reject(new Error("the file is not a picture this browser can read"));
    image.src = url;
  });
}
