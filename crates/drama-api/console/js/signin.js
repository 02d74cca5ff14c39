// Signing in: an API key (`dk_…`) or a Supabase access token, kept in this tab's
// sessionStorage and sent as `Authorization: Bearer …`; never put in a URL.

import { api, setToken } from "./api.js";
import { h, message, replace } from "./dom.js";

export function render(main, ctx) {
  const input = h("input", { id: "credential", name: "credential", type: "password",
    autocomplete: "off", spellcheck: "false", required: true,
    "aria-describedby": "credential-hint" });
  const status = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary", text: "Sign in" });
  const form = h("form", { class: "panel stack", id: "sign-in", novalidate: true },
    h("label", { for: "credential", text: "API key or Supabase access token" }),
    input,
    h("p", { id: "credential-hint", class: "hint",
      text: "Kept only in this browser tab until you sign out or close it. An operator makes keys with `drama-server keys create`; you can make more on the Account page." }),
    h("div", { class: "row" }, submit),
    status);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (!value) {
      replace(status, message("Paste your API key or access token first."));
      input.focus();
      return;
    }
    submit.disabled = true;
    setToken(value);
    try {
      await api("GET", "/dramas?limit=1", { auth: false });
      input.value = "";
      ctx.notice("");
      ctx.go(location.hash && location.hash !== "#" ? location.hash : "#/");
    } catch (err) {
      setToken(null);
      replace(status, message(err.status === 401
        ? `That credential was refused: ${err.message}`
        : err.message));
      submit.disabled = false;
      input.focus();
    }
  });
  replace(main, h("h1", { text: "Sign in" }), form);
  input.focus();
}
