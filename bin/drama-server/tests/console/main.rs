//! The console in a real headless Chromium against a real `serve` on PostgreSQL with the
//! offline provider: sign in, create from a premise (the allowed models) or a drama JSON,
//! follow a run live over SSE (through a server restart) with its budget, graph and costs, play
//! a clip, a stale edit's conflict message, one scene regenerated, the account's ledger,
//! cancel, an XSS title shown as text, a phone-sized screen, keyboard use, API keys, the quick
//! start's sign-in link, and no browser console errors.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod browser;
mod guards;
mod server;
mod steps;
#[path = "../support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use browser::{Browser, network_status};
use server::Server;

const XSS: &str = "<img src=x onerror=alert(1)>";

/// Where the tests leave their screenshots: `<target>/console-screenshots/`.
fn screenshots() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_drama-server"));
    exe.parent()
        .and_then(|p| p.parent())
        .unwrap()
        .join("console-screenshots")
}

async fn sign_in(b: &Browser, s: &Server) {
    b.go(&s.url("/ui")).await;
    b.type_into("#credential", &s.key).await;
    b.click("#sign-in button[type=submit]").await;
    b.until(
        "the drama list",
        Duration::from_secs(10),
        "return document.querySelector('#dramas') !== null",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_is_watched_played_edited_and_cancelled_in_the_browser() {
    let mut s = Server::start("console_flow").await;
    let mut b = Browser::start(1280, 1000).await;

    // Signing in: a wrong credential is refused with the server's reason; the right one is
    // kept in sessionStorage and never appears in the URL.
    b.go(&s.url("/ui")).await;
    b.type_into(
        "#credential",
        "dk_notakey_000000000000000000000000000000000000000000",
    )
    .await;
    b.click("#sign-in button[type=submit]").await;
    let refused = b.text("#sign-in .message").await;
    assert!(refused.contains("refused"), "{refused}");
    b.assert_clean_console("a refused sign-in", |e| network_status(e, 401))
        .await;
    sign_in(&b, &s).await;
    assert_eq!(b.js("return sessionStorage.length").await, json!(1));
    let url = b.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(&s.key), "{url}");

    // A drama whose title is markup shows the characters.
    let (status, body, _) = s
        .call(
            Method::POST,
            "/dramas",
            Some(json!({"drama": {
            "id": "xss", "title": XSS, "description": "<script>window.pwned = 1</script>",
            "premise": "p"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Create from a premise, with the models the server allows: the console opens the run
    // that writes it.
    b.route("#/new").await;
    steps::model_choice(&b, &s).await;
    b.type_into(
        "#premise",
        "A lighthouse keeper and a storm chaser trade secrets, in 2 episodes",
    )
    .await;
    b.type_into("#drama-id", "storm").await;
    b.click("#premise-form button[type=submit]").await;
    b.until(
        "the writing run",
        Duration::from_secs(10),
        "return location.hash.startsWith('#/run/') && document.querySelector('svg.graph .node')",
    )
    .await;
    let writing = steps::run_on_page(&b).await;
    s.settle(&writing, Duration::from_secs(60)).await;
    b.until(
        "the writing run to show completed",
        Duration::from_secs(20),
        "return document.querySelector('#run-status .badge')?.textContent === 'completed'",
    )
    .await;

    b.route("#/").await;
    let title = b.text("article[data-drama=xss] a.title").await;
    assert_eq!(title, XSS);
    assert_eq!(
        b.js("return document.querySelectorAll('main img[src=\"x\"]').length")
            .await,
        json!(0)
    );
    b.until(
        "the storm card",
        Duration::from_secs(10),
        "return document.querySelector('article[data-drama=storm] img.thumb')?.naturalWidth > 0",
    )
    .await;
    b.screenshot(&screenshots().join("dramas.png")).await;
    b.route("#/d/xss").await;
    assert_eq!(b.text("#drama-title").await, XSS);
    assert!(
        b.js("return window.pwned === undefined")
            .await
            .as_bool()
            .unwrap()
    );
    steps::create_from_json(&b, &s).await;
    b.assert_clean_console("the list, the XSS drama and the JSON ones", |_| false)
        .await;

    // Start a generation from the drama page, with its estimate shown first (what starts now,
    // and what the scenes the run writes are expected to add) and a budget that the run keeps
    // (far above even the most it can spend: nothing may be cut here).
    b.route("#/d/storm").await;
    b.until(
        "the estimate",
        Duration::from_secs(10),
        "return /credits|up to date/.test(document.querySelector('#estimate')?.textContent)",
    )
    .await;
    let (_, estimate, _) = s
        .call(Method::POST, "/dramas/storm/estimate", Some(json!({})))
        .await;
    assert!(
        estimate["expectedCost"].as_i64() > estimate["cost"].as_i64(),
        "the storm's episodes have no scenes yet: {estimate}"
    );
    assert_eq!(
        b.text("#estimate").await,
        format!(
            "{} tasks ({}), {} credits now, about {} with the scenes it writes (at most {}).",
            estimate["tasks"],
            estimate["byKind"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(kind, k)| format!("{} {kind}", k["tasks"]))
                .collect::<Vec<_>>()
                .join(", "),
            estimate["cost"],
            estimate["expectedCost"],
            estimate["maxCost"]
        )
    );
    assert!(
        b.text("#budget-hint")
            .await
            .contains(&format!("about {} credits", estimate["expectedCost"])),
        "the budget hint uses the expected cost"
    );
    let budget = 50_000;
    b.type_into("#budget", &budget.to_string()).await;
    b.click("#generate").await;
    b.until("the run page", Duration::from_secs(10),
        "return location.hash.startsWith('#/run/') && document.querySelectorAll('svg.graph .node').length > 3").await;
    let run = steps::run_on_page(&b).await;
    let (_, graph) = s.graph(&run).await;
    assert_eq!(graph["run"]["budget"], budget, "{}", graph["run"]);
    assert_eq!(
        b.text("#cost [data-cost=budget] b").await,
        budget.to_string()
    );

    // Nodes change state while the page stays the same page (no reload, no polling).
    b.js("document.body.dataset.marker = 'kept'; return true")
        .await;
    b.js(WATCH_STATES).await;
    let before = b.js("return [...document.querySelectorAll('svg.graph .node')].filter(n => n.dataset.state === 'completed').length").await;
    b.until("tasks completing live", Duration::from_secs(60), &format!(
        "return document.body.dataset.marker === 'kept' && [...document.querySelectorAll('svg.graph .node')].filter(n => n.dataset.state === 'completed').length >= {} + 2",
        before.as_u64().unwrap())).await;
    b.until(
        "a task running",
        Duration::from_secs(30),
        "return document.querySelector('svg.graph .node.running')",
    )
    .await;
    assert_eq!(b.text("#live").await, "live");
    // A run whose tasks work is under way, though its own node has sent no event since it
    // was read waiting; its cost so far includes the tasks the scene writers added.
    assert_eq!(b.text("#run-status .badge").await, "processing");
    assert!(
        b.text("#cost [data-cost=total]")
            .await
            .starts_with("total so far ")
    );
    b.screenshot(&screenshots().join("run.png")).await;

    // The server goes away mid-run and comes back: the stream reconnects, resumes after the
    // last event it saw, and the graph finishes without a reload.
    b.click("svg.graph .node.running").await;
    let watched = b
        .js("return document.querySelector('#details h2').textContent")
        .await;
    let seen = b.js("return window.seenStates").await;
    let cut = chrono_now_ms();
    s.restart().await;
    b.until("the stream to reconnect", Duration::from_secs(30),
        "return document.querySelector('#live').textContent === 'live' && document.body.dataset.marker === 'kept'").await;
    let settled = s.settle(&run, Duration::from_secs(150)).await;
    let wire = settled["status"].as_str().unwrap().to_owned();
    assert_eq!(wire, "completed", "{settled}");
    b.until(
        "the run to settle on the page",
        Duration::from_secs(30),
        &format!(
            "return document.querySelector('#run-status .badge')?.textContent === {}",
            json!(wire)
        ),
    )
    .await;
    let counts = settled["counts"].clone();
    assert_eq!(
        b.text("#counts [data-count=total] b").await,
        counts["total"].to_string()
    );
    assert_eq!(
        b.text("#counts [data-count=completed] b").await,
        counts["completed"].to_string()
    );
    assert_eq!(
        b.js("return document.body.dataset.marker").await,
        json!("kept")
    );
    steps::run_graph_and_cost(&b, &s, &run).await;
    // Every event of the watched task was applied exactly once across the reconnect.
    let shown = b.text("#details h3:last-of-type").await;
    let expected = events_of(&s, &run, watched.as_str().unwrap()).await;
    assert!(
        shown.contains(&format!("Events ({expected})")),
        "{shown} vs {expected} events"
    );
    report_latency(&s, &run, &seen, cut).await;
    let graph_reads = b.js("return performance.getEntriesByType('resource').filter(r => r.name.endsWith('/graph')).length").await;
    assert!(
        graph_reads.as_u64().unwrap() <= 12,
        "the graph was re-read {graph_reads} times"
    );
    b.assert_clean_console("the live run", |e| {
        // Requests the restart cut off or found nobody listening for.
        e["source"] == "network"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("net::ERR_"))
    })
    .await;

    // The drama page plays a clip.
    b.route("#/d/storm").await;
    b.element("[data-scene] video").await;
    b.js("document.querySelector('[data-scene] video').scrollIntoView(); return true")
        .await;
    b.until(
        "a clip to have data",
        Duration::from_secs(30),
        "return document.querySelector('[data-scene] video').readyState >= 2",
    )
    .await;
    b.js("window.scrollTo(0, 0); return true").await;
    b.until(
        "the pictures",
        Duration::from_secs(20),
        "return [...document.querySelectorAll('main img')].filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete && i.naturalWidth > 0)",
    )
    .await;
    // A window tall enough for everything down to the first scene (its storyboard, clip
    // and prompts); measured twice, as the layout may shift once the window is resized.
    for _ in 0..2 {
        let wanted = b
            .js("return Math.ceil(document.querySelector('[data-scene]').getBoundingClientRect().bottom \
                 + scrollY + 24 + outerHeight - innerHeight)")
            .await;
        b.client
            .set_window_size(1280, u32::try_from(wanted.as_u64().unwrap()).unwrap())
            .await
            .unwrap();
    }
    assert!(
        b.js("return document.querySelector('[data-scene]').getBoundingClientRect().bottom <= innerHeight")
            .await
            .as_bool()
            .unwrap(),
        "the first scene is in the picture"
    );
    b.until("the pictures below", Duration::from_secs(20),
        "return [...document.querySelectorAll('main img')].filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete && i.naturalWidth > 0)").await;
    // Decoded pictures only: a loaded image may not be painted yet.
    b.js("const shown = [...document.querySelectorAll('main img')].filter(i => i.getBoundingClientRect().top < innerHeight); \
         return Promise.race([Promise.all(shown.map(i => i.decode().catch(() => null))), \
           new Promise(r => setTimeout(r, 3000))]).then(() => true)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.screenshot(&screenshots().join("drama.png")).await;
    b.client.set_window_size(1280, 1000).await.unwrap();

    // An edit based on a version that is no longer current: the conflict is explained and
    // nothing is written.
    b.click("[data-field='/dramas/storm#title'] button").await;
    let (_, _, etag) = s.call(Method::GET, "/dramas/storm", None).await;
    let (status, _, _) = s
        .call(
            Method::PATCH,
            "/dramas/storm",
            Some(json!({"title": "Changed elsewhere"})),
        )
        .await;
    assert_eq!(status, 200);
    b.type_into(".edit-form input[name=title]", "My stale title")
        .await;
    b.click(".edit-form button[type=submit]").await;
    let conflict = b.text(".conflict").await;
    assert!(conflict.contains("changed"), "{conflict}");
    let (_, drama, now) = s.call(Method::GET, "/dramas/storm", None).await;
    assert_eq!(drama["title"], "Changed elsewhere");
    assert_ne!(now, etag);
    b.assert_clean_console("the stale edit", |e| network_status(e, 409))
        .await;

    // One scene regenerated alone; then the account lists what every run charged.
    let scene_run = steps::regenerate_scene(&b, &s, "storm").await;
    steps::account(&b, &s, &[&scene_run, &run, &writing]).await;
    b.assert_clean_console("a scene and the account", |_| false)
        .await;

    // Cancel stops a run.
    b.route("#/d/storm").await;
    b.click("#force").await;
    b.until(
        "the forced estimate",
        Duration::from_secs(10),
        "return /\\d+ tasks?/.test(document.querySelector('#estimate')?.textContent)",
    )
    .await;
    b.click("#generate").await;
    b.until("a running task", Duration::from_secs(30),
        "return location.hash.startsWith('#/run/') && document.querySelector('svg.graph .node.running')").await;
    let forced = steps::run_on_page(&b).await;
    b.click("#cancel").await;
    let cancelled = s.settle(&forced, Duration::from_secs(60)).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(
        cancelled["counts"]["cancelled"].as_u64().unwrap() > 0,
        "{cancelled}"
    );
    b.until("the cancelled run on the page", Duration::from_secs(20),
        "return document.querySelector('#run-status .badge')?.textContent === 'cancelled' && !document.querySelector('svg.graph .node.running')").await;
    assert!(
        b.js("return document.querySelector('#resume').hidden === false")
            .await
            .as_bool()
            .unwrap()
    );
    b.assert_clean_console("cancelling", |_| false).await;
}

/// Records, in the page, when each graph node took each state (for the latency report).
const WATCH_STATES: &str = "window.seenStates = []; \
    new MutationObserver((changes) => { for (const c of changes) { \
      window.seenStates.push([c.target.dataset.key, c.target.dataset.state, Date.now()]); } }) \
    .observe(document.querySelector('svg.graph'), \
      {subtree: true, attributes: true, attributeFilter: ['data-state']}); return true";

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Prints how long a state change took from the server's event (its commit time) to the
/// page's graph, for every change before `cut` that the page showed (docs/benchmarks/console.md
/// reports it; nothing is asserted about time).
async fn report_latency(s: &Server, run: &str, seen: &Value, cut: i64) {
    let text = s.events(run).await;
    let seen: Vec<(String, String, i64)> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_owned(),
                r[1].as_str().unwrap_or_default().to_owned(),
                r[2].as_i64().unwrap(),
            )
        })
        .collect();
    let mut latencies: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["at"].as_i64().is_some_and(|at| at < cut - 1000))
        .filter_map(|e| {
            let at = e["at"].as_i64()?;
            seen.iter()
                .find(|(key, state, t)| e["key"] == *key && e["state"] == *state && *t >= at)
                .map(|(_, _, t)| t - at)
        })
        .collect();
    latencies.sort_unstable();
    if let (Some(max), false) = (latencies.last(), latencies.is_empty()) {
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "console bench: {} state changes from event to graph: p50 {} ms, p90 {} ms, max {} ms",
            latencies.len(),
            at(0.5),
            at(0.9),
            max
        );
    }
}

/// How many events the run's stream has for the task with `key`.
async fn events_of(s: &Server, run: &str, key: &str) -> usize {
    let text = s.events(run).await;
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|e| e["key"] == key)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_sized_screen_and_the_keyboard_reach_everything() {
    let s = Server::start("console_phone").await;
    let mut b = Browser::start(375, 812).await;
    sign_in(&b, &s).await;
    let (status, body, _) = s
        .call(
            Method::POST,
            "/dramas",
            Some(json!({"premise": "A tiny robot learns to bake, in 1 episode", "id": "robot"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    s.settle(body["jobId"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    let (status, started, _) = s.call(Method::POST, "/dramas/robot/generate", None).await;
    assert_eq!(status, 202, "{started}");
    let run = started["jobId"].as_str().unwrap().to_owned();

    // Nothing is wider than the screen: the graph scrolls inside its own box.
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth";
    for (hash, ready) in [
        ("#/", "article[data-drama=robot]"),
        ("#/d/robot", "[data-episode]"),
        (&*format!("#/run/{run}"), "svg.graph .node"),
        ("#/account", "#keys table"),
        ("#/new", "#premise"),
    ] {
        b.route(hash).await;
        b.element(ready).await;
        assert!(
            b.js(fits).await.as_bool().unwrap(),
            "{hash} is wider than 375 px"
        );
    }

    // The keyboard alone opens a task's details from the graph.
    b.route(&format!("#/run/{run}")).await;
    b.element("svg.graph .node").await;
    b.js("document.querySelector('svg.graph .node').focus(); return true")
        .await;
    let active = b.client.active_element().await.unwrap();
    active
        .send_keys(&fantoccini::key::Key::Enter)
        .await
        .unwrap();
    let key = b
        .js("return document.querySelector('svg.graph .node').dataset.key")
        .await;
    b.until(
        "the details of the focused task",
        Duration::from_secs(5),
        &format!("return document.querySelector('#details h2')?.textContent === {key}"),
    )
    .await;

    // Signing out on the page of a run that is still working: what the page had scheduled (a
    // throttled read of the run's costs, a graph refresh, the stream) stops with it and never
    // reaches the server without the credential. Throttled reads wait at most 2.5 s.
    b.click("#sign-out").await;
    b.element("#credential").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.assert_clean_console("signing out on a live run's page", |_| false)
        .await;
    sign_in(&b, &s).await;
    s.settle(&run, Duration::from_secs(120)).await;

    // API keys: create (the secret shown once), then revoke with confirmation.
    b.route("#/account").await;
    b.type_into("#key-name", "phone script").await;
    b.click("#new-key button[type=submit]").await;
    let secret = b.text("#new-secret").await;
    assert!(secret.starts_with("dk_"), "{secret}");
    let (_, keys, _) = s.call(Method::GET, "/api-keys", None).await;
    let made = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "phone script")
        .unwrap()
        .clone();
    assert!(
        made.get("key").is_none(),
        "a listed key never carries its secret"
    );
    b.click(&format!(
        "tr[data-key='{}'] button",
        made["id"].as_str().unwrap()
    ))
    .await;
    b.click("dialog button[data-confirm=yes]").await;
    b.until(
        "the key to show revoked",
        Duration::from_secs(10),
        &format!(
            "return document.querySelector(\"tr[data-key='{}']\")?.textContent.includes('revoked')",
            made["id"].as_str().unwrap()
        ),
    )
    .await;
    let refused = s
        .http
        .get(s.url("/dramas"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // Deleting asks first; cancelling the dialog keeps the drama.
    b.route("#/").await;
    b.click("article[data-drama=robot] button.danger").await;
    b.element("dialog[open]").await;
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Escape)
        .await
        .unwrap();
    b.until(
        "the dialog to close",
        Duration::from_secs(5),
        "return !document.querySelector('dialog')",
    )
    .await;
    assert_eq!(s.call(Method::GET, "/dramas/robot", None).await.0, 200);
    b.click("article[data-drama=robot] button.danger").await;
    b.click("dialog button[data-confirm=yes]").await;
    b.until(
        "the card to go",
        Duration::from_secs(10),
        "return !document.querySelector('article[data-drama=robot]')",
    )
    .await;
    assert_eq!(s.call(Method::GET, "/dramas/robot", None).await.0, 404);

    // Signing out forgets the credential.
    b.click("#sign-out").await;
    b.element("#credential").await;
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));
    b.assert_clean_console("the phone session", |_| false).await;

    steps::quick_start_link(&mut b).await;
}
