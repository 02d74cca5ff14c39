// The task graph of a run: one lane per top-level group (a character, an episode), tasks
// placed left to right by dependency depth, arrows from each task to what waits for it, state
// colours, and the critical path (the chain of tasks that decides when the run can finish).

import { s } from "./dom.js";

const W = 156;
const H = 30;
const COL = 186;
const ROW = 40;
const LANE_HEAD = 22;
const PAD = 10;

/** The lane of a task: the key of its top-level group, or "" for tasks directly in the run. */
function laneOf(task, byId, rootId) {
  let node = task;
  let lane = "";
  while (node && node.parentId && node.parentId !== rootId) {
    node = byId.get(node.parentId);
    if (node) lane = node.key;
  }
  return lane;
}

/** "character:char-hiro" → "Character char-hiro"; "" → "Run". */
export function laneTitle(key) {
  if (!key) return "Run";
  const [kind, ...rest] = key.split(":");
  return `${kind.charAt(0).toUpperCase()}${kind.slice(1)} ${rest.join(":")}`.trim();
}

/** A short label for a task box. */
function label(task) {
  const tail = task.key.includes(":") ? task.key.slice(task.key.lastIndexOf(":") + 1) : task.key;
  const text = `${task.kind} ${tail}`;
  return text.length > 24 ? `${text.slice(0, 23)}…` : text;
}

/** How long a task took, takes so far, or (not started) is expected to take. */
function weight(task, typical, now) {
  if (task.startedAt && task.finishedAt) return Math.max(1, task.finishedAt - task.startedAt);
  if (task.startedAt && task.state === "running") return Math.max(1, now - task.startedAt);
  return typical.get(task.kind) || 1000;
}

/**
 * The critical path: the heaviest chain of dependencies, by measured durations (and, for
 * tasks not run yet, the mean of their kind in this run). Returns {nodes: Set, edges: Set of
 * "from>to"}.
 */
export function criticalPath(tasks, byKey, now = Date.now()) {
  const sums = new Map();
  for (const t of tasks) {
    if (t.startedAt && t.finishedAt && t.state === "completed") {
      const [n, total] = sums.get(t.kind) || [0, 0];
      sums.set(t.kind, [n + 1, total + (t.finishedAt - t.startedAt)]);
    }
  }
  const typical = new Map([...sums].map(([k, [n, total]]) => [k, total / n]));
  const best = new Map();
  const pred = new Map();
  const visit = (t, guard) => {
    if (best.has(t.id)) return best.get(t.id);
    if (guard.has(t.id)) return 0;
    guard.add(t.id);
    let longest = 0;
    let from = null;
    for (const key of t.dependencies || []) {
      const dep = byKey.get(key);
      if (!dep) continue;
      const value = visit(dep, guard);
      if (value > longest) {
        longest = value;
        from = dep;
      }
    }
    const total = longest + weight(t, typical, now);
    best.set(t.id, total);
    pred.set(t.id, from);
    return total;
  };
  let end = null;
  for (const t of tasks) {
    const total = visit(t, new Set());
    if (!end || total > best.get(end.id)) end = t;
  }
  const nodes = new Set();
  const edges = new Set();
  for (let t = end; t; t = pred.get(t.id)) {
    nodes.add(t.id);
    const p = pred.get(t.id);
    if (p) edges.add(`${p.id}>${t.id}`);
  }
  return { nodes, edges, length: end ? best.get(end.id) : 0 };
}

/** Places tasks: lanes in first-seen order, columns by dependency depth. */
function layout(tasks, byId, byKey, rootId) {
  const depth = new Map();
  const depthOf = (t, guard = new Set()) => {
    if (depth.has(t.id)) return depth.get(t.id);
    if (guard.has(t.id)) return 0;
    guard.add(t.id);
    let d = 0;
    for (const key of t.dependencies || []) {
      const dep = byKey.get(key);
      if (dep) d = Math.max(d, depthOf(dep, guard) + 1);
    }
    depth.set(t.id, d);
    return d;
  };
  const lanes = new Map();
  for (const t of tasks) {
    const lane = laneOf(t, byId, rootId);
    if (!lanes.has(lane)) lanes.set(lane, []);
    lanes.get(lane).push(t);
  }
  const place = new Map();
  const laneBoxes = [];
  let y = PAD;
  let maxDepth = 0;
  for (const [lane, members] of lanes) {
    const stacks = new Map();
    let rows = 1;
    for (const t of members) {
      const d = depthOf(t);
      maxDepth = Math.max(maxDepth, d);
      const row = stacks.get(d) || 0;
      stacks.set(d, row + 1);
      rows = Math.max(rows, row + 1);
      place.set(t.id, { x: PAD + d * COL, y: y + LANE_HEAD + row * ROW });
    }
    const height = LANE_HEAD + rows * ROW + 4;
    laneBoxes.push({ lane, y, height });
    y += height + 8;
  }
  return { place, laneBoxes, width: PAD * 2 + (maxDepth + 1) * COL, height: y + PAD };
}

/** The drawn graph; `update()` recolours it in place so focus and scroll survive. */
export class GraphView {
  constructor(onSelect) {
    this.onSelect = onSelect;
    this.svg = s("svg", { class: "graph", role: "group", "aria-label": "Task graph" });
    this.structure = "";
    this.boxes = new Map();
    this.edges = new Map();
  }

  /** Draws (or redraws, when nodes or edges changed) and recolours. */
  render(model) {
    const tasks = model.tasks();
    const signature = tasks.map((t) => `${t.id}:${(t.dependencies || []).join(",")}`).join(";");
    if (signature !== this.structure) {
      this.structure = signature;
      this.draw(model, tasks);
    }
    return this.update(model, tasks);
  }

  draw(model, tasks) {
    const { place, laneBoxes, width, height } = layout(tasks, model.byId, model.byKey, model.rootId);
    const svg = this.svg;
    svg.replaceChildren();
    svg.setAttribute("width", Math.max(width, 320));
    svg.setAttribute("height", Math.max(height, 60));
    svg.setAttribute("viewBox", `0 0 ${Math.max(width, 320)} ${Math.max(height, 60)}`);
    svg.append(s("defs", {},
      s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7",
        markerHeight: "7", orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z" })),
      s("marker", { id: "arrow-crit", class: "crit", viewBox: "0 0 10 10", refX: "9", refY: "5",
        markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z" }))));
    for (const box of laneBoxes) {
      svg.append(s("rect", { class: "lane", x: 2, y: box.y, width: Math.max(width, 320) - 4,
        height: box.height, rx: 6 }));
      svg.append(s("text", { class: "lane-label", x: PAD, y: box.y + 15, text: laneTitle(box.lane) }));
    }
    this.edges = new Map();
    const edgeLayer = s("g", { class: "edges" });
    svg.append(edgeLayer);
    for (const t of tasks) {
      const to = place.get(t.id);
      for (const key of t.dependencies || []) {
        const dep = model.byKey.get(key);
        const from = dep && place.get(dep.id);
        if (!from) continue;
        const x1 = from.x + W;
        const y1 = from.y + H / 2;
        const x2 = to.x - 2;
        const y2 = to.y + H / 2;
        const bend = Math.max(30, (x2 - x1) / 2);
        const path = s("path", { class: "edge", "marker-end": "url(#arrow)", "data-from": dep.id, "data-to": t.id,
          d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}` });
        this.edges.set(`${dep.id}>${t.id}`, path);
        edgeLayer.append(path);
      }
    }
    this.boxes = new Map();
    for (const t of tasks) {
      const at = place.get(t.id);
      const title = s("title", {});
      const node = s("g", { class: "node", tabindex: "0", role: "button", "data-id": t.id,
        "data-key": t.key, transform: `translate(${at.x},${at.y})` },
      title, s("rect", { width: W, height: H }), s("text", { x: 8, y: 19, text: label(t) }));
      const select = () => this.onSelect(t.id);
      node.addEventListener("click", select);
      node.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          select();
        }
      });
      this.boxes.set(t.id, { node, title });
      svg.append(node);
    }
  }

  update(model, tasks) {
    const crit = criticalPath(tasks, model.byKey);
    for (const t of tasks) {
      const box = this.boxes.get(t.id);
      if (!box) continue;
      const classes = ["node", t.state];
      if (crit.nodes.has(t.id)) classes.push("crit");
      if (model.selected === t.id) classes.push("selected");
      box.node.setAttribute("class", classes.join(" "));
      box.node.dataset.state = t.state;
      const text = `${t.key}: ${t.state}${crit.nodes.has(t.id) ? " (critical path)" : ""}`;
      box.title.textContent = text;
      box.node.setAttribute("aria-label", text);
    }
    for (const [id, path] of this.edges) {
      const on = crit.edges.has(id);
      path.setAttribute("class", on ? "edge crit" : "edge");
      path.setAttribute("marker-end", on ? "url(#arrow-crit)" : "url(#arrow)");
    }
    return crit;
  }
}
