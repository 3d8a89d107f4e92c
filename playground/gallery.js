// @ts-check
import { describeParams } from "./lib/params.js";

/** @typedef {import("./lib/params.js").GenerationParams} GenerationParams */
/** @typedef {{ params: GenerationParams, images: string[] }} GalleryEntry images: PNG data URLs */

/** Most entries kept on the page; older ones are dropped (their images live in memory). */
const MAX_ENTRIES = 100;

/** The gallery: finished generations, newest first, each restorable and downloadable. */
export class Gallery {
  /** @param {HTMLUListElement} list @param {(p: GenerationParams) => void} onRestore */
  constructor(list, onRestore) {
    this.list = list;
    this.onRestore = onRestore;
  }

  /** @param {GalleryEntry} entry */
  add(entry) {
    const li = document.createElement("li");
    const figure = document.createElement("figure");
    const restore = document.createElement("button");
    restore.type = "button";
    restore.className = "restore";
    restore.title = "Restore these parameters";
    restore.setAttribute("aria-label", `Restore the parameters of “${entry.params.prompt}”`);
    restore.addEventListener("click", () => this.onRestore(entry.params));
    const links = document.createElement("div");
    entry.images.forEach((src, i) => {
      const img = document.createElement("img");
      img.src = src;
      img.alt = entry.params.prompt;
      img.dataset.testid = "result-image";
      restore.append(img);
      const a = document.createElement("a");
      a.href = src;
      a.download = `omni-diffusion-${entry.params.seed ?? "random"}-${i}.png`;
      a.textContent = entry.images.length > 1 ? `PNG ${i + 1}` : "Download PNG";
      links.append(a);
    });
    const caption = document.createElement("figcaption");
    const prompt = document.createElement("strong");
    prompt.textContent = entry.params.prompt;
    caption.append(prompt, describeParams(entry.params));
    figure.append(restore, caption, links);
    li.append(figure);
    this.list.prepend(li);
    while (this.list.children.length > MAX_ENTRIES) this.list.lastElementChild?.remove();
  }
}
