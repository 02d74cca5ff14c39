// Pictures and clips. URLs that load as they are (a public bucket, signed links) are used as
// they are. A `/media/{key}` URL of this server needs the credential header, which an <img> or
// <video> cannot send: those are fetched with it and shown from a blob: URL. Everything loads
// only when it scrolls into view, a few at a time, so a long drama stays within the API's
// per-user rate limit (a 429 is retried after its Retry-After).

import { authHeaders, token } from "./api.js";
import { h } from "./dom.js";

const blobs = new Map();
const PARALLEL = 4;
let running = 0;
const waiting = [];
/** Elements showing media of the current page, and which page that is. */
const shown = new Set();
let page = 0;

/** Releases the previous page's media: its elements let go of their sources first (a detached
 * clip may still be reading), then the blob URLs are revoked. */
export function releaseMedia() {
  page += 1;
  for (const el of shown) {
    el.removeAttribute("src");
    el.removeAttribute("poster");
    if (el instanceof HTMLMediaElement) el.load();
  }
  shown.clear();
  for (const url of blobs.values()) url.then((u) => u && URL.revokeObjectURL(u)).catch(() => {});
  blobs.clear();
  waiting.length = 0;
}

function needsHeader(url) {
  try {
    return new URL(url, location.href).pathname.startsWith("/media/");
  } catch {
    return false;
  }
}

/** Runs `task` when fewer than PARALLEL fetches are under way. */
function queued(task) {
  return new Promise((resolve) => {
    const run = () => {
      running += 1;
      task().then(resolve, () => resolve(null)).finally(() => {
        running -= 1;
        const next = waiting.shift();
        if (next) next();
      });
    };
    if (running < PARALLEL) run();
    else waiting.push(run);
  });
}

async function fetchBlob(path) {
  for (let attempt = 0; attempt < 4; attempt += 1) {
    const response = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    if (response.ok) return URL.createObjectURL(await response.blob());
    if (response.status !== 429) return null;
    const wait = Number.parseFloat(response.headers.get("Retry-After")) || 1;
    await new Promise((r) => setTimeout(r, wait * 1000));
  }
  return null;
}

/** A URL an element can load: the URL itself, or a blob: URL of the bytes. */
export function loadable(url) {
  if (!needsHeader(url)) return Promise.resolve(url);
  // Signed out (a page being left): nothing to fetch, and nothing to remember.
  if (!token()) return Promise.resolve(null);
  const path = new URL(url, location.href).pathname;
  if (!blobs.has(path)) blobs.set(path, queued(() => fetchBlob(path)));
  return blobs.get(path);
}

function missing(text) {
  return h("div", { class: "placeholder", text });
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      observer.unobserve(entry.target);
      start(entry.target);
    }
  }, { rootMargin: "300px" })
  : null;

function start(el) {
  const { src, poster, what } = el.dataset;
  const mine = page;
  // A source that arrives after its page was left is not used (its URL is being revoked).
  const current = () => mine === page && el.isConnected;
  if (poster) loadable(poster).then((p) => { if (p && current()) el.poster = p; });
  const failed = () => el.replaceWith(missing(`${what} could not be loaded`));
  loadable(src).then((s) => {
    if (!current()) return;
    shown.add(el);
    if (!s) return failed();
    // A URL the browser cannot load (refused by the policy, gone, unreachable) says so in
    // place of a broken picture or a player that never starts.
    el.addEventListener("error", () => { if (el.isConnected) failed(); }, { once: true });
    el.src = s;
  });
}

function watch(el) {
  if (observer) observer.observe(el);
  else start(el);
  return el;
}

/** An image, or a placeholder saying what is missing. */
export function image(url, alt, cls = "media") {
  if (!url) return missing(`No ${alt} yet`);
  return watch(h("img", { class: cls, alt, decoding: "async", "data-src": url, "data-what": alt }));
}

/** A clip with controls; `poster` is the picture it was made from (a storyboard, a portrait),
 * shown until it plays. */
export function video(url, label, cls = "media", poster = null) {
  if (!url) return missing(`No ${label} yet`);
  return watch(h("video", { class: cls, controls: true, preload: "auto", playsinline: true,
    "aria-label": label, "data-src": url, "data-poster": poster || undefined, "data-what": label }));
}
