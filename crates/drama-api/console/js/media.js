// Pictures and clips. URLs that load as they are (a public bucket, signed links) are used as
// they are. A `/media/{key}` URL of this server needs the credential header, which an <img> or
// <video> cannot send: those are fetched with it and shown from a blob: URL. Clips are fetched
// only when they scroll into view.

import { authHeaders } from "./api.js";
import { h } from "./dom.js";

const blobs = new Map();

/** Releases the blob URLs made for the previous page. */
export function releaseMedia() {
  for (const url of blobs.values()) url.then((u) => u && URL.revokeObjectURL(u)).catch(() => {});
  blobs.clear();
}

function needsHeader(url) {
  try {
    const u = new URL(url, location.href);
    return u.pathname.startsWith("/media/");
  } catch {
    return false;
  }
}

/** A URL an element can load: the URL itself, or a blob: URL of the bytes. */
export function loadable(url) {
  if (!needsHeader(url)) return Promise.resolve(url);
  const path = new URL(url, location.href).pathname;
  if (!blobs.has(path)) {
    blobs.set(path, fetch(path, { headers: authHeaders(), cache: "no-store" })
      .then((r) => (r.ok ? r.blob() : null))
      .then((b) => (b ? URL.createObjectURL(b) : null))
      .catch(() => null));
  }
  return blobs.get(path);
}

function missing(text) {
  return h("div", { class: "placeholder", text });
}

/** An image, or a placeholder saying what is missing. */
export function image(url, alt, cls = "media") {
  if (!url) return missing(`No ${alt} yet`);
  const img = h("img", { class: cls, alt, loading: "lazy", decoding: "async" });
  loadable(url).then((src) => {
    if (src) img.src = src;
    else img.replaceWith(missing(`${alt} could not be loaded`));
  });
  return img;
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      start(entry.target);
    }
  }, { rootMargin: "200px" })
  : null;

function start(video) {
  loadable(video.dataset.src).then((src) => {
    if (src) video.src = src;
    else video.replaceWith(missing("The clip could not be loaded"));
  });
}

/** A clip with controls, loaded when it comes into view; `poster` is the picture it was made
 * from (a storyboard, a portrait), shown until it plays. */
export function video(url, label, cls = "media", poster = null) {
  if (!url) return missing(`No ${label} yet`);
  const el = h("video", { class: cls, controls: true, preload: "auto", playsinline: true,
    "aria-label": label, "data-src": url });
  if (poster) loadable(poster).then((src) => { if (src) el.poster = src; });
  if (observer) observer.observe(el);
  else start(el);
  return el;
}
