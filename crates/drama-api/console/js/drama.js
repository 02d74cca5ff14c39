// A drama: its characters (portrait, audition), episodes with their scenes (storyboard, clip,
// prompts) and stitched video; edits with the version they were based on; generation of
// everything or one part, with its estimated cost shown before it starts. Follows the drama's
// change stream, so new pictures and clips appear while a run makes them.

import { api, get, post, seg } from "./api.js";
import { ago, badge, confirmDialog, facts, h, message, replace } from "./dom.js";
import { Edits, editable, versionOf } from "./edit.js";
import { image, video } from "./media.js";
import { follow } from "./sse.js";

/**
 * A fresh `Idempotency-Key` for one click that starts paid work: a network retry of that
 * request replays its run, while each click is a request of its own. `crypto.randomUUID`
 * needs a secure context; a console served over plain HTTP builds the same version-4 UUID
 * from `crypto.getRandomValues`.
 */
function clickKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export async function render(main, ctx, id) {
  const page = new DramaPage(main, ctx, id);
  ctx.onLeave(() => {
    // A load already under way (the first one included) must not draw over the next page,
    // nor schedule another.
    page.left = true;
    clearTimeout(page.timer);
  });
  await page.load();
  if (page.left || !ctx.live()) return;
  ctx.onLeave(follow(`/dramas/${seg(id)}/events`, {
    event: (frame) => page.changed(frame),
  }));
}

/** "N credits now", and when the run writes scenes, what their storyboards and clips are
 * expected to add once written (`expectedCost`) and can add at most (`maxCost`). */
const creditsText = (e) => {
  if (e.expectedCost == null || e.expectedCost === e.cost) return `${e.cost} credits`;
  return `${e.cost} credits now, about ${e.expectedCost} with the scenes it writes (at most ${e.maxCost})`;
};

const estimateText = (e) => {
  if (!e.tasks) return "Nothing to do: everything is up to date.";
  const parts = Object.entries(e.byKind).map(([kind, k]) => `${k.tasks} ${kind}`);
  return `${e.tasks} task${e.tasks === 1 ? "" : "s"} (${parts.join(", ")}), ${creditsText(e)}.`;
};

/** The budget hint: the budget a run is expected to need, from the same estimate. */
const budgetText = (e) => {
  const base = "Tasks that would go past the budget are cancelled and refunded.";
  if (!e || !e.tasks) return base;
  const expected = e.expectedCost ?? e.cost;
  const most = e.maxCost ?? expected;
  const bound = most > expected ? `; ${most} covers the most it can write` : "";
  return `${base} This run is expected to need about ${expected} credits${bound}.`;
};

class DramaPage {
  constructor(main, ctx, id) {
    this.main = main;
    this.ctx = ctx;
    this.id = id;
    this.base = `/dramas/${seg(id)}`;
    this.version = null;
    this.timer = null;
    this.lastDraw = 0;
    this.left = false;
    // The edit forms open on the current drawing, and the newest version seen while one was.
    this.edits = new Edits();
    this.deferred = null;
  }

  async load() {
    const [response, runs] = await Promise.all([
      api("GET", this.base),
      get(`${this.base}/jobs`).catch(() => ({ jobs: [] })),
    ]);
    if (this.left || !this.ctx.live()) return;
    this.drama = response.body;
    this.version = versionOf(response.headers);
    this.runs = runs.jobs || [];
    this.draw();
  }

  /** A newer version exists: show it now, or (while editing or playing) offer it. */
  changed(frame) {
    if (this.left) return;
    const version = frame.data && frame.data.version;
    if (frame.event === "deleted") {
      replace(this.main, h("h1", { text: "Deleted" }), message("This drama was deleted.", "ok"),
        h("a", { href: "#/", text: "Back to your dramas" }));
      return;
    }
    if (typeof version !== "number" || version <= (this.version ?? 0)) return;
    if (this.edits.editing()) {
      // Shown once the last editor closes (see `draw`).
      this.deferred = Math.max(this.deferred ?? 0, version);
      this.ctx.notice(`This drama changed (version ${version}). Your open editor still saves against version ${this.version}.`);
      return;
    }
    // Someone is typing or watching: look again in a moment instead of redrawing under them.
    const typing = this.main.contains(document.activeElement) && /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (typing || [...this.main.querySelectorAll("video")].some((v) => !v.paused)) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.changed(frame), 2000);
      return;
    }
    // Many changes arrive during a run; redraw at most every two seconds.
    clearTimeout(this.timer);
    const wait = Math.max(0, 2000 - (Date.now() - this.lastDraw));
    this.timer = setTimeout(() => this.load().catch(() => {}), wait);
  }

  field(path, field, label, value, multiline = false) {
    return editable({
      path, field, label, value, multiline, name: `${path}#${field}`, edits: this.edits,
      version: () => this.version,
      saved: (v) => {
        if (v !== null) this.version = v;
        this.ctx.notice(`Saved ${label}.`);
        this.load().catch(() => {});
      },
      reload: () => this.load().catch((e) => this.ctx.notice(e.message, "error")),
    });
  }

  /** Asks for confirmation with the estimate, then starts; opens the run. */
  async start(what, estimateBody, startPath, startBody = {}) {
    let text;
    try {
      text = estimateText(await post(`${this.base}/estimate`, estimateBody));
    } catch (e) {
      text = `No estimate: ${e.message}`;
    }
    if (!(await confirmDialog(what, text, "Start"))) return;
    const key = clickKey();
    try {
      const { status, body } = await api("POST", startPath, {
        body: startBody,
        headers: { "Idempotency-Key": key },
      });
      if (body && body.jobId) this.ctx.go(`#/run/${seg(body.jobId)}`);
      else if (status < 300) this.load();
    } catch (e) {
      this.ctx.notice(e.message, "error");
    }
  }

  draw() {
    this.lastDraw = Date.now();
    // A drawing replaces every form of the last one: its count starts again, and when its
    // last editor closes, a version that arrived meanwhile is loaded.
    this.edits = new Edits(() => {
      const waiting = this.deferred;
      this.deferred = null;
      if (waiting && waiting > (this.version ?? 0)) {
        this.changed({ event: "changed", data: { version: waiting } });
      }
    });
    const d = this.drama;
    const scroll = window.scrollY;
    replace(this.main,
      h("p", { class: "small" }, h("a", { href: "#/", text: "← Dramas" })),
      h("h1", { id: "drama-title", text: d.title || d.id }),
      h("section", { class: "panel hero" },
        image(d.url, "cover"),
        h("div", { class: "stack" },
          h("div", {}, h("strong", { text: "Title " }), this.field(this.base, "title", "title", d.title)),
          h("div", {}, h("strong", { text: "Description" }),
            this.field(this.base, "description", "description", d.description, true)),
          h("div", {}, h("strong", { text: "Premise" }),
            this.field(this.base, "premise", "premise", d.premise, true)),
          facts([["Id", h("span", { class: "mono", text: d.id })], ["Version", String(this.version ?? "—")]])),
        this.generator()),
      this.runsPanel(),
      h("h2", { text: `Characters (${d.characters.length})` }),
      h("div", { class: "cards", id: "characters" }, d.characters.map((c) => this.character(c))),
      h("h2", { text: `Episodes (${d.episodes.length})` }),
      d.episodes.map((e) => this.episode(e)));
    window.scrollTo(0, scroll);
  }

  /** The generate panel, kept across redraws (what was typed stays) and re-estimated only
   * when the drama's version moved. */
  generator() {
    if (!this.gen) this.gen = this.generatePanel();
    else if (this.gen.estimatedAt !== this.version) this.gen.refresh();
    this.gen.estimatedAt = this.version;
    return this.gen;
  }

  generatePanel() {
    const force = h("input", { type: "checkbox", id: "force" });
    const budget = h("input", { type: "number", id: "budget", min: "1", step: "1", inputmode: "numeric",
      placeholder: "no limit" });
    const estimate = h("p", { id: "estimate", class: "muted", "aria-live": "polite", text: "Estimating…" });
    const hint = h("p", { class: "hint", id: "budget-hint", text: budgetText(null) });
    const go = h("button", { type: "button", class: "primary", id: "generate", text: "Start generation" });
    const refresh = async () => {
      try {
        const e = await post(`${this.base}/estimate`, { force: force.checked });
        estimate.textContent = estimateText(e);
        hint.textContent = budgetText(e);
        go.disabled = !e.tasks;
      } catch (e) {
        estimate.textContent = `No estimate: ${e.message}`;
        hint.textContent = budgetText(null);
      }
    };
    force.addEventListener("change", refresh);
    go.addEventListener("click", async () => {
      const body = { force: force.checked };
      const cap = Number.parseInt(budget.value, 10);
      if (budget.value !== "") {
        if (!(cap >= 1)) {
          this.ctx.notice("The budget must be a whole number of credits, at least 1.", "error");
          budget.focus();
          return;
        }
        body.budget = cap;
      }
      go.disabled = true;
      const key = clickKey();
      try {
        const started = await post(`${this.base}/generate`, body, { headers: { "Idempotency-Key": key } });
        this.ctx.go(`#/run/${seg(started.jobId)}`);
      } catch (e) {
        this.ctx.notice(e.message, "error");
        go.disabled = false;
      }
    });
    refresh();
    const panel = h("section", { class: "gen stack", "aria-labelledby": "gen-title" },
      h("h2", { id: "gen-title", text: "Generate" }),
      h("div", { class: "row" }, force, h("label", { for: "force", text: "Also remake what is up to date" })),
      h("label", { for: "budget", text: "Budget (credits, optional)" }), budget,
      hint,
      estimate, h("div", { class: "row" }, go));
    panel.refresh = refresh;
    return panel;
  }

  runsPanel() {
    const runs = [...this.runs].reverse().slice(0, 8);
    if (!runs.length) return null;
    return h("section", { class: "panel" },
      h("h2", { text: "Runs" }),
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", { text: "Run" }), h("th", { text: "Status" }),
          h("th", { class: "opt", text: "Tasks" }), h("th", { text: "Started" }))),
        h("tbody", {}, runs.map((r) => h("tr", {},
          h("td", {}, h("a", { href: `#/run/${seg(r.jobId)}`, text: r.kind || r.type })),
          h("td", {}, badge(r.status)),
          h("td", { class: "opt", text: r.counts ? `${r.counts.completed}/${r.counts.total}` : "—" }),
          h("td", { text: ago(r.createdAt) }))))));
  }

  character(c) {
    const path = `${this.base}/characters/${seg(c.id)}`;
    const audition = (c.assets || []).find((a) => a.kind === "video");
    const portrait = h("button", { type: "button", text: "New portrait" });
    portrait.addEventListener("click", () => this.start(`New portrait of ${c.name}`,
      { force: true, assetId: (c.assets || []).find((a) => a.kind === "image")?.id }, `${path}/generate`));
    const redo = h("button", { type: "button", text: "New audition" });
    redo.addEventListener("click", () => this.start(`New audition of ${c.name}`,
      { force: true, assetId: audition?.id }, `${path}/audition`));
    return h("article", { class: "card", "data-character": c.id },
      h("div", { class: "body" },
        h("h3", {}, this.field(path, "name", `${c.name}'s name`, c.name)),
        h("div", { class: "row" }, image(c.url, `portrait of ${c.name}`), video(audition?.url, `audition of ${c.name}`, "media", c.url)),
        this.field(path, "description", `${c.name}'s description`, c.description, true),
        c.voice_description ? h("p", { class: "muted small", text: `Voice: ${c.voice_description}` }) : null,
        h("div", { class: "row" }, portrait, redo)));
  }

  episode(e) {
    const path = `${this.base}/episodes/${seg(e.id)}`;
    const gen = h("button", { type: "button", text: "Generate episode" });
    gen.addEventListener("click", () => this.start(`Generate episode “${e.title}”`,
      { force: false, episodeId: e.id }, `${path}/generate`, {}));
    const stitch = h("button", { type: "button", text: "Stitch episode" });
    stitch.addEventListener("click", () => this.start(`Stitch episode “${e.title}”`,
      { force: true, assetId: (e.assets || []).find((a) => a.kind === "video")?.id }, `${path}/stitch`));
    return h("section", { class: "panel", "data-episode": e.id },
      h("h3", {}, this.field(path, "title", `title of episode ${e.id}`, e.title)),
      this.field(path, "description", `description of episode ${e.id}`, e.description, true),
      h("div", { class: "row" }, video(e.url, `episode ${e.title}`, "media wide", e.scenes?.[0]?.image_url)),
      h("div", { class: "row" }, gen, stitch),
      (e.scenes || []).map((scene, i) => this.scene(e, scene, i)));
  }

  scene(e, scene, i) {
    const path = `${this.base}/episodes/${seg(e.id)}/scenes/${seg(scene.id)}`;
    const assets = scene.assets || [];
    const board = assets.find((a) => a.kind === "image");
    const clip = assets.find((a) => a.kind === "video");
    const redo = h("button", { type: "button", "data-action": "regenerate-scene", text: "Regenerate scene" });
    redo.addEventListener("click", () => this.start(`Regenerate scene ${i + 1}`,
      { force: true, sceneId: scene.id }, `${path}/generate`, { force: true }));
    const one = (asset, what) => {
      if (!asset) return null;
      const b = h("button", { type: "button", text: `New ${what}` });
      b.addEventListener("click", () => this.start(`New ${what} for scene ${i + 1}`,
        { force: true, assetId: asset.id }, `${path}/assets/${seg(asset.id)}/generate`));
      return b;
    };
    const prompt = (asset, what) => asset
      ? h("div", {}, h("strong", { class: "small", text: `${what} prompt` }),
        this.field(`${path}/assets/${seg(asset.id)}`, "prompt", `${what} prompt of scene ${i + 1}`, asset.prompt, true))
      : null;
    return h("div", { class: "scene", "data-scene": scene.id },
      image(scene.image_url, `storyboard of scene ${i + 1}`),
      video(scene.video_url, `clip of scene ${i + 1}`, "media", scene.image_url),
      h("div", { class: "text stack" },
        h("strong", { text: `Scene ${i + 1}` }),
        this.field(path, "description", `description of scene ${i + 1}`, scene.description, true),
        prompt(board, "Image"), prompt(clip, "Video"),
        h("div", { class: "row" }, redo, one(board, "storyboard"), one(clip, "clip"))));
  }
}
