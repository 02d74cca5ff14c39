// Building the page from data. Text is always set as text (never parsed as HTML), so a title
// such as `<img src=x onerror=alert(1)>` shows those characters.

/** An element: `h("a", {href: "#/", class: "x", onclick: fn}, "text", child, …)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element (attributes only; children appended as for `h`). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      el.textContent = String(value);
    } else if (name === "value") {
      el.value = value;
    } else if (name === "checked" || name === "disabled" || name === "hidden" || name === "required") {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

/** Appends children: nodes as they are, anything else as text; arrays are flattened. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A status badge. */
export function badge(status) {
  const text = status || "none";
  return h("span", { class: `badge ${text}`, text });
}

/** "3 minutes ago" for a time in milliseconds. */
export function ago(ms) {
  if (!ms) return "never";
  const seconds = Math.round((Date.now() - ms) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

/** A time of day with seconds. */
export function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "—";
}

/** A duration in milliseconds, short. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** A definition list from [label, value] pairs (values are text or nodes). */
export function facts(pairs) {
  return h("dl", { class: "facts" },
    pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v ?? "—")]));
}

/** Asks for confirmation in a modal dialog; resolves true when confirmed. */
export function confirmDialog(title, text, action = "Delete") {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title", text: title }),
      h("p", { text }),
      h("div", { class: "row" },
        h("button", { type: "button", class: "danger", "data-confirm": "yes", text: action,
          onclick: () => dialog.close("yes") }),
        h("button", { type: "button", text: "Cancel", onclick: () => dialog.close("no") })));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("button:not(.danger)").focus();
  });
}

/** A message box (role=alert for errors). */
export function message(text, kind = "error") {
  return h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : "status", text });
}
