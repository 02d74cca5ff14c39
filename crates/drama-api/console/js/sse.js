// Server-Sent Events read with fetch, so the credential goes in a header (EventSource cannot
// send one, and it must never be in a URL). After a dropped connection it reconnects with
// `Last-Event-ID`, so nothing is missed and nothing is applied twice.

import { authHeaders, token } from "./api.js";

/**
 * Follows `path`. `handlers.event({id, event, data})` for each event, `handlers.status(text)`
 * with "live" | "reconnecting" | "ended", `handlers.end(data)` once the stream says it ended.
 * `after` resumes after that event id. Returns a function that stops following.
 */
export function follow(path, handlers, after = null) {
  const controller = new AbortController();
  let lastId = after;
  let stopped = false;
  let delay = 500;

  const run = async () => {
    while (!stopped) {
      if (!token()) {
        // Signed out: nothing to follow, and nothing to send without a credential.
        handlers.status?.("ended");
        return;
      }
      let ended = false;
      try {
        const headers = { Accept: "text/event-stream", ...authHeaders() };
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(path, { headers, cache: "no-store", signal: controller.signal });
        if (response.status === 401 || response.status === 404) {
          handlers.status?.("ended");
          handlers.error?.(response.status);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
        handlers.status?.("live");
        delay = 500;
        ended = await read(response.body, (frame) => {
          if (frame.id !== null) lastId = frame.id;
          if (frame.event === "end") {
            handlers.end?.(frame.data);
            return true;
          }
          handlers.event?.(frame);
          return false;
        });
      } catch (e) {
        if (stopped || e.name === "AbortError") return;
      }
      if (ended) {
        handlers.status?.("ended");
        return;
      }
      if (stopped) return;
      handlers.status?.("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 8000);
    }
  };
  run();
  return () => {
    stopped = true;
    controller.abort();
  };
}

/** Reads frames until the stream closes; true when `onFrame` said the stream ended. */
async function read(body, onFrame) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let frame = { id: null, event: "message", data: "" };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer[newline] === "\r" ? 2 : 1));
      if (line === "") {
        if (frame.data !== "" || frame.event !== "message") {
          let data = frame.data;
          try {
            data = JSON.parse(frame.data);
          } catch {
            // Not JSON: kept as text.
          }
          if (onFrame({ id: frame.id, event: frame.event, data })) {
            reader.cancel().catch(() => {});
            return true;
          }
        }
        frame = { id: null, event: "message", data: "" };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") frame.id = text;
      else if (field === "event") frame.event = text;
      else if (field === "data") frame.data = frame.data ? `${frame.data}\n${text}` : text;
    }
  }
}
