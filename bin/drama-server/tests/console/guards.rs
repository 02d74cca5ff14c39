//! What the console must not do when the network is slow or the page changes under it: draw a
//! slow load over the page the user moved to, keep waiting for an editor that is gone, load a
//! page of dramas twice; and media from an origin other than the page's.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::browser::Browser;
use crate::server::Server;
use crate::sign_in;

/// Makes the page's requests whose URL contains `part` answer `ms` later (the console calls
/// the global `fetch` at each request).
async fn slow_down(b: &Browser, part: &str, ms: u64) {
    b.js(&format!(
        "const real = window.realFetch || window.fetch; window.realFetch = real; \
         window.fetch = (url, init) => String(url).includes({}) \
           ? new Promise((r) => setTimeout(r, {ms})).then(() => real(url, init)) \
           : real(url, init); return true",
        json!(part)
    ))
    .await;
}

async fn store(s: &Server, id: &str) {
    let (status, body, _) = s
        .call(
            Method::POST,
            "/dramas",
            Some(json!({"drama": drama_testkit::builders::drama_json(id, 1, 1, 1)})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// The account page is shown, and nothing of `left` was drawn over it.
async fn still_on_account(b: &Browser, left: &str) {
    // Longer than the slowed request takes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let shown = b
        .js("return [location.hash, !!document.querySelector('#keys'), \
             !!document.querySelector('svg.graph'), !!document.querySelector('#drama-title')]")
        .await;
    assert_eq!(
        shown,
        json!(["#/account", true, false, false]),
        "the {left} page drew over the account page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loads_stale_editors_and_double_clicks_do_not_confuse_the_console() {
    // The server names itself `localhost` while the browser uses 127.0.0.1: its file URLs are
    // of another origin than the page, and plain http.
    let mut s = Server::start("console_guards").await;
    let public = format!("http://localhost:{}", s.port);
    s.set_env("PUBLIC_URL", &public);
    s.restart().await;
    let mut b = Browser::start(1280, 1000).await;
    sign_in(&b, &s).await;

    // Media from the configured origin load under the console's policy.
    store(&s, "far").await;
    let (status, body, _) = s
        .call(
            Method::POST,
            "/dramas/far/characters/c0/generate",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["url"].as_str().unwrap().starts_with(&public), "{body}");
    b.route("#/d/far").await;
    b.until(
        "the portrait from the PUBLIC_URL origin",
        Duration::from_secs(20),
        "return document.querySelector('[data-character=c0] img')?.naturalWidth > 0",
    )
    .await;
    b.assert_clean_console("media of another origin", |_| false)
        .await;

    // A run page whose graph is slow, left for the account page: nothing of it is drawn.
    let (status, started, _) = s.call(Method::POST, "/dramas/far/generate", None).await;
    assert_eq!(status, 202, "{started}");
    let run = started["jobId"].as_str().unwrap().to_owned();
    b.route("#/").await;
    b.element("article[data-drama=far]").await;
    slow_down(&b, "/graph", 1500).await;
    b.route(&format!("#/run/{run}")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.route("#/account").await;
    still_on_account(&b, "run").await;
    // The same for a drama page, whose stream must not start either.
    slow_down(&b, "/dramas/far", 1500).await;
    b.route("#/d/far").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.route("#/account").await;
    still_on_account(&b, "drama").await;
    b.js("window.fetch = window.realFetch; return true").await;
    s.settle(&run, Duration::from_secs(120)).await;

    // An editor left open on a page the user left does not hold the next visit's live
    // updates back.
    b.route("#/d/far").await;
    b.click("[data-field='/dramas/far#title'] button").await;
    b.element(".edit-form input[name=title]").await;
    b.route("#/").await;
    b.element("article[data-drama=far]").await;
    b.route("#/d/far").await;
    b.element("#drama-title").await;
    let (status, _, _) = s
        .call(
            Method::PATCH,
            "/dramas/far",
            Some(json!({"title": "Changed elsewhere"})),
        )
        .await;
    assert_eq!(status, 200);
    b.until(
        "the change to show",
        Duration::from_secs(10),
        "return document.querySelector('#drama-title').textContent === 'Changed elsewhere'",
    )
    .await;

    // A change that came while an editor was open is shown once it closes.
    b.click("[data-field='/dramas/far#description'] button")
        .await;
    b.element(".edit-form textarea[name=description]").await;
    let (status, _, _) = s
        .call(
            Method::PATCH,
            "/dramas/far",
            Some(json!({"title": "Changed again"})),
        )
        .await;
    assert_eq!(status, 200);
    b.until(
        "the notice of the change",
        Duration::from_secs(10),
        "return /changed \\(version/.test(document.querySelector('#notice').textContent)",
    )
    .await;
    assert_eq!(b.text("#drama-title").await, "Changed elsewhere");
    b.click(".edit-form button[type=button]").await;
    b.until(
        "the deferred change to show",
        Duration::from_secs(10),
        "return document.querySelector('#drama-title').textContent === 'Changed again'",
    )
    .await;

    // Show more, clicked twice while its page loads, adds that page once.
    for i in 0..24 {
        store(&s, &format!("many-{i:02}")).await;
    }
    b.route("#/").await;
    b.until(
        "a full first page",
        Duration::from_secs(10),
        "return document.querySelectorAll('article[data-drama]').length === 24",
    )
    .await;
    slow_down(&b, "cursor=", 1000).await;
    b.js("const more = [...document.querySelectorAll('main button')].find((x) => x.textContent === 'Show more'); \
          more.click(); more.click(); return true")
        .await;
    b.until(
        "the second page",
        Duration::from_secs(10),
        "return document.querySelectorAll('article[data-drama]').length >= 25",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        b.js("return document.querySelectorAll('article[data-drama]').length")
            .await,
        json!(25),
        "the second page was added twice"
    );
    b.js("window.fetch = window.realFetch; return true").await;

    // Deleting the last drama says there are none.
    for i in 0..24 {
        s.call(Method::DELETE, &format!("/dramas/many-{i:02}"), None)
            .await;
    }
    b.route("#/").await;
    b.element("article[data-drama=far]").await;
    b.click("article[data-drama=far] button.danger").await;
    b.click("dialog button[data-confirm=yes]").await;
    b.until(
        "the empty list's text",
        Duration::from_secs(10),
        "return !document.querySelector('article[data-drama]') && /No dramas yet/.test(document.querySelector('main').textContent)",
    )
    .await;
    b.assert_clean_console("the guards", |_| false).await;
}
