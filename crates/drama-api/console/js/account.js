// The account: the credit balance and the ledger of credit movements (`GET /me`, newest first,
// a page at a time), and the signed-in user's API keys: list, create (the secret is shown
// once), revoke.

import { del, get, post, seg, token } from "./api.js";
import { ago, append, confirmDialog, h, message, replace } from "./dom.js";

/** Ledger entries per request (the API's default page). */
const PAGE = 20;

export async function render(main, ctx) {
  const balance = h("section", { class: "panel", id: "balance" });
  const keys = h("section", { class: "panel", id: "keys" });
  replace(main, h("h1", { text: "Account" }), balance, keys);
  await Promise.all([showBalance(balance), showKeys(keys, ctx)]);
}

/** A signed amount as people read it: "+500", "-40". */
const signed = (n) => (n > 0 ? `+${n}` : String(n));

/** One ledger entry as a table row (`GET /me`'s `ledger[]`). */
function entryRow(e) {
  const at = Date.parse(e.created_at);
  return h("tr", { "data-entry": String(e.id) },
    h("td", {}, h("time", { datetime: e.created_at, title: new Date(at).toLocaleString(), text: ago(at) })),
    h("td", { "data-col": "amount", class: e.amount < 0 ? "debit" : "credit", text: signed(e.amount) }),
    h("td", { "data-col": "balance", class: "opt", text: String(e.balance_after) }),
    h("td", { "data-col": "reason", text: e.reason.replaceAll("_", " ") }),
    h("td", { "data-col": "run", class: "opt" }, e.run_id
      ? h("a", { href: `#/run/${seg(e.run_id)}`, class: "mono", title: e.run_id, text: e.run_id.slice(0, 8) })
      : ""),
    h("td", { "data-col": "note", class: "opt", text: e.note ?? "" }));
}

/** The balance and the ledger; "Older movements" reads the next page at `next_offset`. */
async function showBalance(panel) {
  const tokens = h("strong", { id: "tokens", text: "…" });
  const rows = h("tbody", { id: "ledger" });
  const empty = h("p", { class: "muted", text: "No credit movements yet.", hidden: true });
  const more = h("button", { type: "button", id: "ledger-more", text: "Older movements", hidden: true });
  const status = h("div", { "aria-live": "polite" });
  const shown = new Set();
  let next = 0;
  const load = async () => {
    const me = await get(`/me?limit=${PAGE}&offset=${next}`);
    tokens.textContent = String(me.tokens);
    // A movement made since the first page shifts the offsets by one: never list a row twice.
    const fresh = me.ledger.filter((e) => !shown.has(e.id));
    for (const e of fresh) shown.add(e.id);
    append(rows, fresh.map(entryRow));
    empty.hidden = shown.size > 0;
    next = me.next_offset;
    more.hidden = next === null || next === undefined;
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      await load();
      replace(status);
    } catch (e) {
      replace(status, message(e.message));
    }
    more.disabled = false;
  });
  replace(panel,
    h("h2", { text: "Credits" }),
    h("p", {}, "Balance: ", tokens, " credits"),
    h("h3", { text: "Movements, newest first" }),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "When" }), h("th", { text: "Change" }),
        h("th", { class: "opt", text: "Balance after" }), h("th", { text: "Why" }),
        h("th", { class: "opt", text: "Run" }), h("th", { class: "opt", text: "Note" }))),
      rows),
    empty, h("div", { class: "row" }, more), status);
  try {
    await load();
  } catch (e) {
    if (e.status === 401) throw e;
    replace(status, message(`The balance could not be read: ${e.message}`));
  }
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
        // Keys made with this one (and with those) are revoked with it: say how many, and
        // whether the key of this tab is among them.
        const line = (id) => list.keys
          .filter((x) => x.madeBy === id && x.active)
          .flatMap((x) => [x, ...line(x.id)]);
        const made = line(k.id).length;
        const self = k.prefix === mine || line(k.id).some((x) => x.prefix === mine);
        const also = made === 0 ? ""
          : made === 1 ? " The key made with it stops too."
          : ` The ${made} keys made with it stop too.`;
        const yes = await confirmDialog(`Revoke “${k.name}”?`, (self
          ? "This is the key you are signed in with: you will be signed out. Programs using it stop working."
          : "Programs using this key stop working at once.") + also, "Revoke");
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
