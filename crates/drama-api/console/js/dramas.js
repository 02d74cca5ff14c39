// The list of the caller's dramas: cover, title, episode count, last change, latest run;
// delete with confirmation.

import { del, get, seg } from "./api.js";
import { ago, badge, confirmDialog, h, message, replace } from "./dom.js";
import { image } from "./media.js";

const PAGE = 24;

export async function render(main, ctx) {
  const grid = h("div", { class: "cards", id: "dramas" });
  const more = h("button", { type: "button", text: "Show more", hidden: true });
  const status = h("div", { "aria-live": "polite" });
  replace(main,
    h("div", { class: "row spread" },
      h("h1", { text: "Your dramas" }),
      h("a", { class: "button primary", href: "#/new", text: "New drama" })),
    status, grid, h("div", { class: "row" }, more));

  let cursor = null;
  const empty = () => {
    if (!grid.children.length && !cursor) {
      replace(status, h("p", { class: "muted" },
        "No dramas yet. ", h("a", { href: "#/new", text: "Write one from a premise" }), "."));
    }
  };
  const load = async () => {
    const query = `/dramas?view=overview&limit=${PAGE}${cursor ? `&cursor=${seg(cursor)}` : ""}`;
    const page = await get(query);
    for (const d of page.dramas) grid.append(card(d, ctx, status, empty));
    cursor = page.cursor;
    more.hidden = !cursor;
    empty();
  };
  // One page at a time: a second click while one loads would ask for the same page again.
  more.addEventListener("click", () => {
    if (more.disabled) return;
    more.disabled = true;
    load()
      .catch((e) => replace(status, message(e.message)))
      .finally(() => { more.disabled = false; });
  });
  await load();
}

function card(d, ctx, status, empty) {
  const run = d.latestRun;
  const remove = h("button", { type: "button", class: "danger", text: "Delete",
    "aria-label": `Delete ${d.title || d.id}` });
  const el = h("article", { class: "card", "data-drama": d.id },
    d.url ? image(d.url, "cover", "thumb") : h("div", { class: "thumb empty", text: "No cover yet" }),
    h("div", { class: "body" },
      h("h3", {}, h("a", { href: `#/d/${seg(d.id)}`, class: "title", text: d.title || d.id })),
      h("div", { class: "muted small" },
        `${d.episodes} episode${d.episodes === 1 ? "" : "s"} · ${d.scenes} scenes · changed ${ago(d.updatedAt)}`),
      run
        ? h("div", { class: "row small" }, "Latest run ", badge(run.status),
          h("a", { href: `#/run/${seg(run.jobId)}`, text: run.total ? `${run.completed}/${run.total} tasks` : "open" }))
        : h("div", { class: "muted small", text: "No runs yet" }),
      h("div", { class: "row" },
        h("a", { class: "button", href: `#/d/${seg(d.id)}`, text: "Open" }), remove)));
  remove.addEventListener("click", async () => {
    const yes = await confirmDialog(`Delete “${d.title || d.id}”?`,
      "The drama, its characters, episodes, scenes and every generated picture and clip are removed. This cannot be undone.");
    if (!yes) return;
    try {
      await del(`/dramas/${seg(d.id)}`);
      el.remove();
      ctx.notice(`Deleted “${d.title || d.id}”.`);
      empty();
    } catch (e) {
      replace(status, message(e.message));
    }
  });
  return el;
}
