// Editing one field of a drama in place. The form remembers the drama version it was opened
// on and sends it as `If-Match`; when someone else changed the drama meanwhile the server
// answers 409 and the form says so, keeping the text that was typed.

import { api } from "./api.js";
import { h, message, replace } from "./dom.js";

/**
 * The edit forms open on one drawing of a page (the page then waits before showing newer
 * versions). A page makes one per drawing, so forms that a redraw or a navigation removed
 * never count; `closed` runs when the last open one closes.
 */
export class Edits {
  constructor(closed = () => {}) {
    this.open = 0;
    this.closed = closed;
  }

  editing() {
    return this.open > 0;
  }

  opened() {
    this.open += 1;
  }

  close() {
    if (this.open === 0) return;
    this.open -= 1;
    if (this.open === 0) this.closed();
  }
}

/**
 * A field shown as text with an Edit button. `opts`: {label, value, multiline, path, field,
 * version: () => number, saved: (newVersion) => void, reload: () => void, name, edits: Edits}.
 */
export function editable(opts) {
  const edits = opts.edits || new Edits();
  const wrap = h("div", { class: "editable", "data-field": opts.name || opts.field });
  const show = () => {
    const edit = h("button", { type: "button", class: "quiet", text: "Edit",
      "aria-label": `Edit ${opts.label}` });
    edit.addEventListener("click", startEditing);
    replace(wrap,
      opts.multiline
        ? h("div", { class: "prompt", text: opts.value || "—" })
        : h("span", { class: "value", text: opts.value || "—" }),
      " ", edit);
  };
  const startEditing = () => {
    edits.opened();
    // Counted once however it closes (saved, cancelled, Escape, reloaded).
    let counted = true;
    const release = () => {
      if (counted) edits.close();
      counted = false;
    };
    const base = opts.version();
    const input = opts.multiline
      ? h("textarea", { name: opts.field, value: opts.value || "", "aria-label": opts.label })
      : h("input", { name: opts.field, value: opts.value || "", "aria-label": opts.label });
    const status = h("div", { "aria-live": "polite" });
    const save = h("button", { type: "submit", class: "primary", text: "Save" });
    const cancel = h("button", { type: "button", text: "Cancel" });
    const form = h("form", { class: "stack edit-form", "data-version": base, novalidate: true },
      input, h("div", { class: "row" }, save, cancel), status);
    const close = () => {
      show();
      release();
    };
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", (e) => {
      if (e.key === "Escape") close();
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      save.disabled = true;
      try {
        const response = await api("PATCH", opts.path, { body: { [opts.field]: input.value }, version: base });
        opts.value = input.value;
        close();
        opts.saved(versionOf(response.headers));
      } catch (err) {
        save.disabled = false;
        if (err.status === 409) {
          const reload = h("button", { type: "button", text: "Reload the drama" });
          reload.addEventListener("click", () => {
            counted = false;
            opts.reload();
          });
          replace(status, h("div", { class: "message error conflict", role: "alert" },
            h("strong", { text: "Someone else changed this drama while you were editing. " }),
            err.message,
            " Your text is still here: copy it, reload, and save again.",
            h("div", { class: "row" }, reload)));
        } else {
          replace(status, message(err.message));
        }
      }
    });
    replace(wrap, form);
    input.focus();
  };
  show();
  return wrap;
}

/** The drama version in an `ETag` header (`"3"`), or null. */
export function versionOf(headers) {
  const tag = headers && headers.get("ETag");
  const n = tag ? Number.parseInt(tag.replace(/^W\//, "").replaceAll("\"", ""), 10) : Number.NaN;
  return Number.isNaN(n) ? null : n;
}
