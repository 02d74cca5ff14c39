// A run, live: the task graph, counts and progress, cost, per-task attempts, errors, provider
// task ids and timings, updated by the run's Server-Sent Events (no polling); cancel and
// resume. A dropped stream reconnects and resumes after the last event it saw.

import { get, post, seg } from "./api.js";
import { badge, clock, duration, facts, h, message, replace } from "./dom.js";
import { GraphView, laneTitle } from "./graph.js";
import { image, video } from "./media.js";
import { follow } from "./sse.js";

const SETTLED = new Set(["completed", "failed", "skipped", "cancelled"]);
const STATES = ["waiting", "ready", "running", "completed", "failed", "skipped", "cancelled"];

/** The run's nodes, kept current by its events. */
class RunModel {
  constructor(graph) {
    this.log = [];
    this.selected = null;
    this.take(graph);
  }

  take(graph) {
    this.run = graph.run;
    this.byId = new Map(graph.nodes.map((n) => [n.id, n]));
    this.byKey = new Map(graph.nodes.filter((n) => n.nodeType !== "run").map((n) => [n.key, n]));
    this.rootId = graph.nodes.find((n) => n.nodeType === "run")?.id;
    if (!this.history) this.history = new Map();
  }

  tasks() {
    return [...this.byId.values()].filter((n) => n.nodeType === "task");
  }

  root() {
    return this.byId.get(this.rootId);
  }

  /** Records one event and applies it; false when it names a node not known yet. */
  apply(e) {
    this.log.push(e);
    if (!this.history.has(e.jobId)) this.history.set(e.jobId, []);
    this.history.get(e.jobId).push(e);
    return this.applyState(e);
  }

  /** What an event says about its node's state, attempts, timings and error. */
  applyState(e) {
    const node = this.byId.get(e.jobId);
    if (!node) return false;
    node.state = e.state;
    if (typeof e.attempt === "number" && node.nodeType === "task") node.attempts = e.attempt;
    if (e.event === "started") {
      node.startedAt = node.startedAt && node.attempts > 1 ? node.startedAt : e.at;
      node.lastStartedAt = e.at;
      node.finishedAt = null;
    }
    if (SETTLED.has(e.state)) node.finishedAt = e.at;
    else if (e.event === "resumed" || e.event === "retrying") node.finishedAt = null;
    const detail = e.detail || {};
    if (detail.error || detail.reason) node.error = detail.error || detail.reason;
    if (e.state === "completed") node.error = null;
    return true;
  }

  counts() {
    const c = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const t of this.tasks()) c[t.state] = (c[t.state] || 0) + 1;
    c.total = this.tasks().length;
    return c;
  }
}

export async function render(main, ctx, id) {
  const graph = await get(`/jobs/${seg(id)}/graph`);
  // The user moved on while the graph was read: nothing of this page is drawn or started.
  if (!ctx.live()) return;
  const model = new RunModel(graph);
  const runId = graph.run.runId || graph.run.jobId;
  const view = new GraphView((nodeId) => select(nodeId));

  const title = h("h1", { id: "run-title" });
  const status = h("span", { id: "run-status" });
  const live = h("span", { class: "live", id: "live", text: "connecting" });
  const bar = h("div", { class: "progress", role: "progressbar", "aria-label": "Progress",
    "aria-valuemin": "0", id: "progress" });
  const counts = h("div", { class: "counts", id: "counts" });
  const money = h("div", { class: "counts", id: "cost" });
  const cancel = h("button", { type: "button", class: "danger", id: "cancel", text: "Cancel run" });
  const resume = h("button", { type: "button", id: "resume", text: "Resume" });
  const actionStatus = h("div", { "aria-live": "polite" });
  const list = h("div", { class: "tasks", id: "task-list" });
  const details = h("section", { class: "panel sticky", id: "details", tabindex: "-1", "aria-label": "Task details" },
    h("p", { class: "muted", text: "Choose a task in the graph or the list to see its attempts, errors and timings." }));
  const crit = h("p", { class: "small muted", id: "critical" });
  const legend = h("div", { class: "legend" }, STATES.map((s) => badge(s)),
    h("span", { class: "small muted", text: "orange outline: critical path" }));

  let stop = () => {};
  let stopped = false;
  let later = null;
  let retry = null;
  const refresh = debounce(async () => {
    if (stopped) return;
    const mark = model.log.length;
    try {
      const fresh = await get(`/jobs/${seg(id)}/graph`);
      model.take(fresh);
      // Events that arrived while the graph was read are as new as it or newer: replay them.
      for (const e of model.log.slice(mark)) model.applyState(e);
      paint();
    } catch {
      // The server is away (the stream is reconnecting meanwhile): try again shortly.
      if (!stopped) retry = setTimeout(refresh, 2000);
    }
  }, 300);
  const costs = throttle(async () => {
    if (stopped) return;
    try {
      const record = await get(`/jobs/${seg(runId)}`);
      model.run = { ...model.run, ...record, children: undefined };
      paintHeader();
    } catch {
      // The next event tries again.
    }
  }, 2500);

  const paintHeader = () => {
    const run = model.run;
    const root = model.root();
    const state = root ? root.state : run.state;
    const c = model.counts();
    replace(title, `${(run.kind || run.type || "run").replaceAll("_", " ")} · `,
      run.dramaId ? h("a", { href: `#/d/${seg(run.dramaId)}`, text: run.dramaId }) : "");
    const shown = root ? runStatus(root.state, c) : run.status;
    // The root's own state stays `waiting` while its tasks work; only a settled state adds news.
    replace(status, badge(shown), " ",
      h("span", { class: "small muted", text: SETTLED.has(state) ? state : "" }));
    const pct = (n) => (c.total ? (100 * n) / c.total : 0);
    replace(bar,
      seg_(pct(c.completed), "done"), seg_(pct(c.failed + c.skipped), "bad"),
      seg_(pct(c.cancelled), "off"), seg_(pct(c.running), "run"));
    bar.setAttribute("aria-valuemax", String(c.total));
    bar.setAttribute("aria-valuenow", String(c.completed));
    bar.setAttribute("aria-valuetext", `${c.completed} of ${c.total} tasks completed`);
    replace(counts, ["total", ...STATES].map((s) => h("span", { "data-count": s }, `${s} `, h("b", { text: String(c[s] || 0) }))));
    const cost = run.cost || {};
    replace(money,
      h("span", { "data-cost": "total" }, "total so far ", h("b", { text: String(cost.total ?? "—") })),
      h("span", { "data-cost": "charged" }, "charged ", h("b", { text: String(cost.charged ?? "—") })),
      h("span", { "data-cost": "refunded" }, "refunded ", h("b", { text: String(cost.refunded ?? "—") })),
      h("span", { "data-cost": "budget" }, "budget ", h("b", { text: run.budget ? String(run.budget) : "none" })));
    const settled = SETTLED.has(state);
    cancel.hidden = settled;
    resume.hidden = !settled || (c.failed + c.skipped + c.cancelled === 0);
  };

  const paint = () => {
    paintHeader();
    const path = view.render(model);
    crit.textContent = path && path.nodes.size
      ? `Critical path: ${path.nodes.size} tasks, ${duration(path.length)} (measured, or the mean of their kind when not run yet).`
      : "";
    paintList();
    if (model.selected) paintDetails(model.selected);
  };

  let listSig = "";
  const buttons = new Map();
  const paintList = () => {
    const sig = model.tasks().map((t) => t.id).join(",");
    if (sig === listSig) {
      for (const t of model.tasks()) {
        const b = buttons.get(t.id);
        if (b && b.dataset.state !== t.state) {
          b.dataset.state = t.state;
          b.lastChild.replaceWith(badge(t.state));
        }
      }
      return;
    }
    listSig = sig;
    buttons.clear();
    const groups = new Map();
    for (const t of model.tasks()) {
      const parent = model.byId.get(t.parentId);
      const lane = parent && parent.nodeType === "group" ? parent.key : "";
      if (!groups.has(lane)) groups.set(lane, []);
      groups.get(lane).push(t);
    }
    replace(list, [...groups].map(([lane, tasks]) => h("div", {},
      h("h3", { text: laneTitle(lane) }),
      tasks.map((t) => {
        const b = h("button", { type: "button", class: "task", "data-id": t.id, "data-state": t.state },
          h("span", { class: "key", text: t.key }), badge(t.state));
        b.addEventListener("click", () => select(t.id));
        buttons.set(t.id, b);
        return b;
      }))));
  };

  let detailsSig = "";
  const paintDetails = (nodeId, force = false) => {
    const t = model.byId.get(nodeId);
    if (!t) return;
    const events = model.history.get(nodeId) || [];
    // Redrawn only when something about the task changed (a playing preview keeps playing).
    const sig = `${nodeId}|${t.state}|${t.attempts}|${events.length}|${t.url}|${t.providerTaskId}|${t.error}`;
    if (sig === detailsSig && !force) return;
    detailsSig = sig;
    const took = t.startedAt ? (t.finishedAt || Date.now()) - (t.lastStartedAt || t.startedAt) : null;
    const preview = t.url
      ? (t.kind === "clip" || t.kind === "audition" || t.kind === "stitch" ? video(t.url, t.key) : image(t.url, t.key))
      : null;
    replace(details,
      h("h2", { class: "mono", text: t.key }),
      h("div", { class: "row" }, badge(t.state), h("span", { class: "small muted", text: t.kind })),
      facts([
        ["Attempts", `${t.attempts} of ${t.maxAttempts}`],
        ["Resource class", t.resourceClass],
        ["Cost", `${t.cost} credits`],
        ["Provider task", t.providerTaskId ? h("span", { class: "mono", text: t.providerTaskId }) : "—"],
        ["Asset", t.assetId ? h("span", { class: "mono", text: t.assetId }) : "—"],
        ["Created", clock(t.createdAt)],
        ["Started", clock(t.startedAt)],
        ["Finished", clock(t.finishedAt)],
        ["Took", took === null ? "—" : duration(took)],
        ["Waits for", t.dependencies.length ? t.dependencies.join(", ") : "nothing"],
      ]),
      t.error ? [h("h3", { text: "Error" }), h("pre", { class: "mono error-text", text: t.error })] : null,
      preview,
      h("h3", { text: `Events (${events.length})` }),
      h("table", {}, h("tbody", {}, events.map((e) => h("tr", {},
        h("td", { text: clock(e.at) }), h("td", { text: e.event }), h("td", {}, badge(e.state)),
        h("td", { class: "mono opt", text: e.detail && Object.keys(e.detail).length ? JSON.stringify(e.detail) : "" }))))));
  };

  const select = (nodeId) => {
    model.selected = nodeId;
    view.update(model, model.tasks());
    paintDetails(nodeId, true);
    // On a phone the details are below the list: bring them into view.
    if (window.innerWidth < 760) details.scrollIntoView({ block: "start" });
  };

  const start = (after) => {
    stop = follow(`/jobs/${seg(runId)}/events`, {
      event: (frame) => {
        const e = frame.data;
        if (!e || typeof e !== "object") return;
        if (!model.apply(e) || e.event === "expanded") refresh();
        if (e.event === "started" || SETTLED.has(e.state)) costs();
        schedule();
      },
      status: (s) => {
        live.textContent = s === "live" ? "live" : s === "reconnecting" ? "reconnecting…" : "stream ended";
        live.className = `live ${s === "live" ? "on" : s === "reconnecting" ? "retry" : ""}`;
      },
      end: () => {
        refresh();
        // Refunds are credited by a background task a few seconds after a run settles.
        later = setTimeout(() => !stopped && costs(), 6000);
      },
    }, after);
  };
  const schedule = rafOnce(paint);

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      model.run = { ...model.run, ...(await post(`/jobs/${seg(runId)}/cancel`)) };
      replace(actionStatus, message("Cancelled: nothing new starts; running tasks are told to stop.", "ok"));
    } catch (e) {
      replace(actionStatus, message(e.message));
    }
    cancel.disabled = false;
    paint();
  });
  resume.addEventListener("click", async () => {
    resume.disabled = true;
    try {
      await post(`/jobs/${seg(runId)}/resume`);
      replace(actionStatus, message("Resumed: failed, skipped and cancelled tasks run again.", "ok"));
      stop();
      const last = model.log.length ? String(model.log[model.log.length - 1].id) : null;
      start(last);
    } catch (e) {
      replace(actionStatus, message(e.message));
    }
    resume.disabled = false;
  });

  const wrap = h("div", { class: "graph-wrap", id: "graph", tabindex: "-1" }, view.svg);
  replace(main,
    h("p", { class: "small" }, h("a", { href: "#/", text: "← Dramas" })),
    title,
    h("section", { class: "panel stack" },
      h("div", { class: "row spread" }, h("div", { class: "row" }, status, live), h("div", { class: "row" }, cancel, resume)),
      bar, counts, money, actionStatus),
    h("h2", { text: "Task graph" }), legend, wrap, crit,
    h("div", { class: "split" }, h("section", { "aria-label": "Tasks" }, h("h2", { text: "Tasks" }), list), details));
  paint();
  start(null);
  ctx.onLeave(() => {
    stopped = true;
    stop();
    refresh.cancel();
    costs.cancel();
    clearTimeout(retry);
    clearTimeout(later);
  });
}

function statusOf(state) {
  return { waiting: "pending", ready: "pending", running: "processing", skipped: "failed" }[state] || state;
}

/** A run's status as the API reports it: an unsettled run some of whose tasks have started
 * (running or finished) is processing, though its own node waits for them. */
function runStatus(state, c) {
  const status = statusOf(state);
  const started = (c.running || 0) + (c.completed || 0) + (c.failed || 0) + (c.skipped || 0) + (c.cancelled || 0);
  return status === "pending" && started > 0 ? "processing" : status;
}

function seg_(pct, cls) {
  const span = h("span", { class: cls });
  span.style.width = `${pct}%`;
  return span;
}

// Both return a function with `cancel()`: a call still waiting when the page is left must not
// go out later (after a sign-out it would reach the server without a credential).
function debounce(fn, ms) {
  let timer = null;
  const call = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  const call = () => {
    if (timer) return;
    const wait = Math.max(0, ms - (Date.now() - last));
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
  call.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return call;
}

function rafOnce(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}
