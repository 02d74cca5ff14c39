// The account: balance and recent credit movements (when the server publishes `GET /me`), and
// the signed-in user's API keys: list, create (the secret is shown once), revoke.

import { del, get, hasRoute, post, seg, token } from "./api.js";
import { ago, confirmDialog, h, message, replace } from "./dom.js";

export async function render(main, ctx) {
  const balance = h("section", { class: "panel", id: "balance", hidden: true });
  const keys = h("section", { class: "panel", id: "keys" });
  replace(main, h("h1", { text: "Account" }), balance, keys);
  await Promise.all([showBalance(balance), showKeys(keys, ctx)]);
}

/** The ledger's entries, whatever the server calls the list. */
function entriesOf(me) {
  for (const name of ["ledger", "entries", "recent", "movements", "transactions"]) {
    const v = me[name];
    if (Array.isArray(v)) return v;
    if (v && Array.isArray(v.entries)) return v.entries;
    if (v && Array.isArray(v.items)) return v.items;
  }
  return [];
}

async function showBalance(panel) {
  if (!(await hasRoute("/me"))) return;
  let me;
  try {
    me = await get("/me");
  } catch {
    return;
  }
  const tokens = me.tokens ?? me.balance ?? me.credits;
  const rows = entriesOf(me).slice(0, 50);
  const when = (e) => e.createdAt ?? e.created_at ?? e.at;
  replace(panel,
    h("h2", { text: "Credits" }),
    h("p", {}, "Balance: ", h("strong", { id: "tokens", text: tokens === undefined ? "—" : String(tokens) }), " credits"),
    rows.length
      ? h("table", {},
        h("thead", {}, h("tr", {}, h("th", { text: "When" }), h("th", { text: "Change" }), h("th", { text: "Why" }),
          h("th", { class: "opt", text: "Run" }))),
        h("tbody", {}, rows.map((e) => h("tr", {},
          h("td", { text: when(e) ? ago(typeof when(e) === "number" ? when(e) : Date.parse(when(e))) : "—" }),
          h("td", { text: String(e.amount ?? e.delta ?? "") }),
          h("td", { text: String(e.reason ?? e.kind ?? "") }),
          h("td", { class: "opt" }, e.runId || e.run_id
            ? h("a", { href: `#/run/${seg(e.runId || e.run_id)}`, text: "run" }) : "")))))
      : h("p", { class: "muted", text: "No credit movements yet." }));
  panel.hidden = false;
}

/** The prefix of the API key this tab is signed in with (`dk_<prefix>_…`), if it is one. */
function currentPrefix() {
  const t = token() || "";
  const m = /^dk_([^_]+)_/.exec(t);
  return m ? m[1] : null;
}

async function showKeys(panel, ctx) {
  const status = h("div", { "aria-live": "polite" });
  const table = h("tbody", {});
  const name = h("input", { id: "key-name", name: "name", maxlength: "100", required: true, placeholder: "laptop script" });
  const days = h("input", { id: "key-days", name: "days", type: "number", min: "1", max: "3650", placeholder: "never" });
  const create = h("button", { type: "submit", class: "primary", text: "Create key" });
  const form = h("form", { class: "stack", id: "new-key", novalidate: true },
    h("h3", { text: "New key" }),
    h("label", { for: "key-name", text: "Name" }), name,
    h("label", { for: "key-days", text: "Expires after (days, optional)" }), days,
    h("div", { class: "row" }, create));
  const load = async () => {
    const list = await get("/api-keys");
    const mine = currentPrefix();
    replace(table, list.keys.map((k) => {
      const revoke = h("button", { type: "button", class: "danger", text: "Revoke", disabled: !k.active,
        "aria-label": `Revoke key ${k.name}` });
      revoke.addEventListener("click", async () => {
        const self = k.prefix === mine;
        const yes = await confirmDialog(`Revoke “${k.name}”?`, self
          ? "This is the key you are signed in with: you will be signed out. Programs using it stop working."
          : "Programs using this key stop working at once.", "Revoke");
        if (!yes) return;
        try {
          await del(`/api-keys/${seg(k.id)}`);
          ctx.notice(`Revoked “${k.name}”.`);
          if (self) ctx.go("#/");
          else await load();
        } catch (e) {
          replace(status, message(e.message));
        }
      });
      const state = k.revokedAt ? "revoked" : k.active ? "active" : "expired";
      return h("tr", { "data-key": k.id },
        h("td", {}, h("strong", { text: k.name }), k.prefix === mine ? h("span", { class: "small muted", text: " (this tab)" }) : null),
        h("td", { class: "mono opt", text: `dk_${k.prefix}_…` }),
        h("td", { text: state }),
        h("td", { class: "opt", text: ago(k.lastUsedAt) }),
        h("td", { class: "opt", text: k.expiresAt ? new Date(k.expiresAt).toLocaleDateString() : "never" }),
        h("td", {}, revoke));
    }));
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim() };
    if (days.value !== "") body.expiresInDays = Number.parseInt(days.value, 10);
    create.disabled = true;
    try {
      const created = await post("/api-keys", body);
      const secret = h("code", { class: "mono secret", id: "new-secret", text: created.key });
      const copy = h("button", { type: "button", text: "Copy" });
      copy.addEventListener("click", () => navigator.clipboard?.writeText(created.key)
        .then(() => { copy.textContent = "Copied"; }, () => { copy.textContent = "Select and copy it"; }));
      replace(status, h("div", { class: "message ok", role: "status" },
        h("p", { text: `Key “${created.name}” created. Copy it now: it is not shown again.` }),
        h("div", { class: "row" }, secret, copy)));
      name.value = "";
      days.value = "";
      await load();
    } catch (err) {
      replace(status, message(err.message));
    }
    create.disabled = false;
  });
  replace(panel,
    h("h2", { text: "API keys" }),
    h("p", { class: "muted small", text: "Keys act as you: they see and change only your dramas. Only a hash of each key is stored." }),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "Name" }), h("th", { class: "opt", text: "Key" }), h("th", { text: "State" }),
        h("th", { class: "opt", text: "Last used" }), h("th", { class: "opt", text: "Expires" }), h("th", { text: "" }))),
      table),
    status, form);
  await load();
}
