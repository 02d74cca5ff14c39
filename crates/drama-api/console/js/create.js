// A new drama: written from a premise by the chosen model (a run), or stored as it is from a
// pasted or uploaded drama JSON.

import { get, post, seg } from "./api.js";
import { h, message, replace } from "./dom.js";

/**
 * The models a premise may name, as `GET /models` lists them (`[{name, default}]`); empty when
 * the list cannot be read, and the server then writes with its default.
 */
async function models() {
  try {
    const body = await get("/models");
    return body.models.map((m) => ({ name: m.name, isDefault: m.default === true }));
  } catch {
    return [];
  }
}

export async function render(main, ctx) {
  const allowed = await models();
  if (!ctx.live()) return;
  const premise = h("textarea", { id: "premise", name: "premise", required: true, maxlength: "20000",
    placeholder: "Two rival bakers share one oven for a week, in 2 episodes" });
  const id = h("input", { id: "drama-id", name: "id", autocomplete: "off", placeholder: "generated when empty" });
  const model = h("select", { id: "model", name: "model" }, allowed.length
    ? allowed.map((m) => h("option", { value: m.name, selected: m.isDefault,
      text: m.isDefault ? `${m.name} (default)` : m.name }))
    : h("option", { value: "", text: "the server's default" }));
  const premiseStatus = h("div", { "aria-live": "polite" });
  const write = h("button", { type: "submit", class: "primary", text: "Write the drama" });
  const premiseForm = h("form", { class: "panel stack", id: "premise-form", novalidate: true },
    h("h2", { text: "From a premise" }),
    h("label", { for: "premise", text: "Premise" }), premise,
    h("label", { for: "drama-id", text: "Id (optional)" }), id,
    h("p", { class: "hint", text: "Letters, digits, - and _; it names the drama in URLs." }),
    h("label", { for: "model", text: "Model" }), model,
    h("div", { class: "row" }, write), premiseStatus);
  premiseForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!premise.value.trim()) {
      replace(premiseStatus, message("Write a premise first."));
      premise.focus();
      return;
    }
    write.disabled = true;
    try {
      const body = { premise: premise.value.trim() };
      if (model.value) body.model = model.value;
      if (id.value.trim()) body.id = id.value.trim();
      const started = await post("/dramas", body);
      ctx.go(`#/run/${seg(started.jobId)}`);
    } catch (err) {
      replace(premiseStatus, message(err.message));
      write.disabled = false;
    }
  });

  const json = h("textarea", { id: "drama-json", name: "drama", class: "mono", rows: "10",
    placeholder: "{\"id\": \"d1\", \"title\": \"…\", \"characters\": [], \"episodes\": []}" });
  const file = h("input", { id: "drama-file", type: "file", accept: "application/json,.json" });
  const jsonStatus = h("div", { "aria-live": "polite" });
  const store = h("button", { type: "submit", class: "primary", text: "Store the drama" });
  file.addEventListener("change", async () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return;
    if (chosen.size > 4 * 1024 * 1024) {
      replace(jsonStatus, message("That file is larger than 4 MB, the most the API accepts."));
      return;
    }
    json.value = await chosen.text();
    replace(jsonStatus);
  });
  const jsonForm = h("form", { class: "panel stack", id: "json-form", novalidate: true },
    h("h2", { text: "From a drama JSON" }),
    h("label", { for: "drama-json", text: "Paste a drama" }), json,
    h("label", { for: "drama-file", text: "…or upload a .json file" }), file,
    h("div", { class: "row" }, store), jsonStatus);
  jsonForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    let value;
    try {
      value = JSON.parse(json.value);
    } catch (err) {
      replace(jsonStatus, message(`This is not valid JSON: ${err.message}`));
      return;
    }
    const drama = value && typeof value === "object" && value.drama ? value.drama : value;
    store.disabled = true;
    try {
      const created = await post("/dramas", { drama });
      ctx.go(`#/d/${seg(created.id)}`);
    } catch (err) {
      replace(jsonStatus, message(err.message));
      store.disabled = false;
    }
  });

  replace(main, h("h1", { text: "New drama" }), h("div", { class: "split" }, premiseForm, jsonForm));
  premise.focus();
}
