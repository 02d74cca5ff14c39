// The console's shell: routes (in the URL fragment, so nothing about them reaches a server
// log), sign-in state, notices, and cleanup when leaving a page.

import { api, setToken, token, whenUnauthorized } from "./api.js";
import { h, message, replace } from "./dom.js";
import { releaseMedia } from "./media.js";
import * as signin from "./signin.js";
import * as dramas from "./dramas.js";
import * as create from "./create.js";
import * as drama from "./drama.js";
import * as run from "./run.js";
import * as account from "./account.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const noticeBox = document.getElementById("notice");
let leaving = [];
// Each navigation's number: what a page loads after an `await` is drawn only while its
// navigation is still the latest (a slow load never draws over the page the user moved to).
let generation = 0;

const ctx = {
  /** Runs `fn` when the user leaves the page (streams stop, timers clear). */
  onLeave(fn) {
    leaving.push(fn);
  },
  /** A message above the page (empty text clears it). */
  notice(text, kind = "ok") {
    noticeBox.className = kind;
    noticeBox.textContent = text || "";
  },
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

whenUnauthorized(() => {
  setToken(null);
  ctx.notice("Your credential was refused (expired, revoked or wrong). Sign in again.", "error");
  route();
});

// Following the link of the page already shown reloads its data.
for (const link of nav.querySelectorAll("a")) {
  link.addEventListener("click", (e) => {
    if (link.getAttribute("href") === (location.hash || "#/")) {
      e.preventDefault();
      route().then(() => main.focus());
    }
  });
}

document.getElementById("sign-out").addEventListener("click", () => {
  setToken(null);
  ctx.notice("Signed out.");
  ctx.go("#/");
});

/** `#signin=CODE` from the quick start's link: exchanged once for the credential. */
async function redeem(code) {
  // The code leaves the address bar (and this history entry) at once.
  history.replaceState(null, "", `${location.pathname}#/`);
  try {
    const { body } = await api("POST", "/ui/sign-in", { body: { code }, auth: false });
    setToken(body.token);
    ctx.notice("Signed in from the quick-start link.");
  } catch (e) {
    ctx.notice(e.message, "error");
  }
}

function cleanUp(fn) {
  try {
    fn();
  } catch {
    // A page's cleanup never blocks the next page.
  }
}

async function route() {
  const mine = ++generation;
  for (const fn of leaving.splice(0)) cleanUp(fn);
  releaseMedia();
  // The context of this navigation: `live()` says whether it is still the page shown, and a
  // cleanup registered once it is not (a stream opened after a slow load) runs at once.
  const live = () => mine === generation;
  const here = Object.assign(Object.create(ctx), {
    live,
    onLeave(fn) {
      if (live()) leaving.push(fn);
      else cleanUp(fn);
    },
  });
  const hash = location.hash || "#/";
  if (hash.startsWith("#signin=")) {
    await redeem(decodeURIComponent(hash.slice("#signin=".length)));
    if (!live()) return;
  }
  if (!token()) {
    nav.hidden = true;
    signin.render(main, here);
    return;
  }
  nav.hidden = false;
  const [page, ...args] = (location.hash || "#/").replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const link of nav.querySelectorAll("a")) {
    const current = link.getAttribute("href") === `#/${page}` || (page === "" && link.getAttribute("href") === "#/");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const pages = {
    "": () => dramas.render(main, here),
    new: () => create.render(main, here),
    d: () => drama.render(main, here, args[0]),
    run: () => run.render(main, here, args[0]),
    account: () => account.render(main, here),
  };
  const show = pages[page];
  replace(main, h("p", { class: "muted", text: "Loading…" }));
  if (!show) {
    replace(main, h("h1", { text: "Not found" }), h("p", {}, h("a", { href: "#/", text: "Back to your dramas" })));
    return;
  }
  try {
    await show();
  } catch (e) {
    if (e.status === 401 || !live()) return;
    replace(main, h("h1", { text: "Something went wrong" }), message(e.message || String(e)),
      h("p", {}, h("a", { href: "#/", text: "Back to your dramas" })));
  }
}

/** Moves keyboard focus to the new page after a navigation. */
window.addEventListener("hashchange", () => {
  route().then(() => main.focus());
});
route();
