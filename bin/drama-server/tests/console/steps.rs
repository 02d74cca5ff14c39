//! Steps of the console flows that hold one page against what the API answers: the model
//! choice, creating from a drama JSON (pasted or uploaded), the run page's graph and costs,
//! one scene regenerated alone, the account's balance and ledger, and the quick start's
//! sign-in link.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::browser::{Browser, network_status};
use crate::server::{QuickStart, Server};

/// The id of the run whose page the browser shows.
pub async fn run_on_page(b: &Browser) -> String {
    b.js("return location.hash.slice('#/run/'.length)")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// `#model` offers exactly the names `GET /models` lists, its default chosen.
pub async fn model_choice(b: &Browser, s: &Server) {
    let (status, body, _) = s.call(Method::GET, "/models", None).await;
    assert_eq!(status, 200, "{body}");
    let models = body["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    let default = &models.iter().find(|m| m["default"] == true).unwrap()["name"];
    b.element("#model option").await;
    assert_eq!(
        b.js("return [...document.querySelectorAll('#model option')].map(o => o.value)")
            .await,
        json!(names)
    );
    assert_eq!(
        &b.js("return document.querySelector('#model').value").await,
        default
    );
}

/// The legacy drama file under another id and a title made of markup.
fn legacy(id: &str, title: &str) -> Value {
    let mut drama: Value = serde_json::from_str(drama_testkit::builders::LEGACY_FIXTURE).unwrap();
    drama["id"] = json!(id);
    drama["title"] = json!(title);
    drama
}

/// A drama stored from a pasted JSON and one from an uploaded file: each opens on its page
/// with its episodes, its title shown as the characters it is.
pub async fn create_from_json(b: &Browser, s: &Server) {
    let episodes = legacy("x", "x")["episodes"].as_array().unwrap().len();

    let title = "Pasted <b>corgi</b>";
    b.route("#/new").await;
    b.element("#drama-json").await;
    // The whole text at once, as a paste puts it (typing 38 kB key by key takes minutes).
    b.client
        .execute(
            "const t = document.querySelector('#drama-json'); t.focus(); t.value = arguments[0]; \
             t.dispatchEvent(new Event('input', {bubbles: true})); return true",
            vec![json!(legacy("corgi_pasted", title).to_string())],
        )
        .await
        .unwrap();
    b.click("#json-form button[type=submit]").await;
    opened(b, s, "corgi_pasted", title, episodes).await;

    let title = "Uploaded <i>corgi</i>";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corgi.json");
    std::fs::write(&file, legacy("corgi_uploaded", title).to_string()).unwrap();
    b.route("#/new").await;
    b.element("#drama-file")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    b.until(
        "the file read into the form",
        Duration::from_secs(10),
        "return document.querySelector('#drama-json').value.includes('corgi_uploaded')",
    )
    .await;
    b.click("#json-form button[type=submit]").await;
    opened(b, s, "corgi_uploaded", title, episodes).await;
}

async fn opened(b: &Browser, s: &Server, id: &str, title: &str, episodes: usize) {
    b.until(
        &format!("the page of {id}"),
        Duration::from_secs(15),
        &format!(
            "return location.hash === {} && document.querySelectorAll('[data-episode]').length > 0",
            json!(format!("#/d/{id}"))
        ),
    )
    .await;
    assert_eq!(b.text("#drama-title").await, title);
    assert_eq!(
        b.js("return document.querySelector('#drama-title').childElementCount")
            .await,
        json!(0),
        "the title is text, not elements"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('[data-episode]').length")
            .await,
        json!(episodes)
    );
    let (status, stored, _) = s.call(Method::GET, &format!("/dramas/{id}"), None).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["title"], title);
}

/// The settled run's page: an arrow for every dependency between its tasks (no more), the
/// critical path outlined as one chain along them, and the credits charged as the API counts
/// them.
pub async fn run_graph_and_cost(b: &Browser, s: &Server, run: &str) {
    let (status, graph) = s.graph(run).await;
    assert_eq!(status, 200, "{graph}");
    let tasks: HashSet<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["nodeType"] == "task")
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let pair = |e: &Value| {
        (
            e["from"].as_str().unwrap().to_owned(),
            e["to"].as_str().unwrap().to_owned(),
        )
    };
    let edges: BTreeSet<(String, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(pair)
        .filter(|(from, to)| tasks.contains(from.as_str()) && tasks.contains(to.as_str()))
        .collect();
    assert!(!edges.is_empty(), "{graph}");
    b.until(
        "the arrows",
        Duration::from_secs(10),
        &format!(
            "return document.querySelectorAll('svg.graph path.edge').length === {}",
            edges.len()
        ),
    )
    .await;
    let arrows = "return [...document.querySelectorAll('svg.graph path.edge')].map(p => \
                  ({from: p.dataset.from, to: p.dataset.to, crit: p.classList.contains('crit')}))";
    let drawn = b.js(arrows).await;
    let drawn = drawn.as_array().unwrap();
    let shown: BTreeSet<(String, String)> = drawn.iter().map(pair).collect();
    assert_eq!(
        shown, edges,
        "one arrow per dependency, from what is needed to what needs it"
    );

    let critical: BTreeSet<String> = b
        .js("return [...document.querySelectorAll('svg.graph .node.crit')].map(n => n.dataset.id)")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert!(!critical.is_empty(), "no task is on the critical path");
    let chain: Vec<(String, String)> = drawn
        .iter()
        .filter(|e| e["crit"] == true)
        .map(pair)
        .collect();
    assert_eq!(chain.len(), critical.len() - 1, "{chain:?} {critical:?}");
    for (from, to) in &chain {
        assert!(
            critical.contains(from) && critical.contains(to),
            "{chain:?} {critical:?}"
        );
        // A chain: no task on it has two critical arrows leaving or arriving.
        assert_eq!(
            chain.iter().filter(|(f, _)| f == from).count(),
            1,
            "{chain:?}"
        );
        assert_eq!(
            chain.iter().filter(|(_, t)| t == to).count(),
            1,
            "{chain:?}"
        );
    }

    let (_, record, _) = s.call(Method::GET, &format!("/jobs/{run}"), None).await;
    let charged = record["cost"]["charged"].as_i64().unwrap();
    assert!(charged > 0, "{record}");
    b.until(
        "the credits charged",
        Duration::from_secs(15),
        &format!(
            "return document.querySelector('#cost [data-cost=charged] b')?.textContent === '{charged}'"
        ),
    )
    .await;
}

/// A scene's own button starts a run of that scene's tasks alone (its storyboard and clip);
/// returns the run.
pub async fn regenerate_scene(b: &Browser, s: &Server, drama: &str) -> String {
    b.route(&format!("#/d/{drama}")).await;
    b.element("[data-scene] button[data-action=regenerate-scene]")
        .await;
    let scene = b
        .js("return document.querySelector('[data-scene]').dataset.scene")
        .await;
    let scene = scene.as_str().unwrap();
    let (_, stored, _) = s.call(Method::GET, &format!("/dramas/{drama}"), None).await;
    let assets: BTreeSet<&str> = stored["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["scenes"].as_array().unwrap())
        .find(|sc| sc["id"] == scene)
        .unwrap()["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(!assets.is_empty(), "{stored}");

    b.click(&format!(
        "[data-scene={}] button[data-action=regenerate-scene]",
        json!(scene)
    ))
    .await;
    b.until(
        "the scene's estimate",
        Duration::from_secs(10),
        "return /\\d+ tasks?/.test(document.querySelector('dialog[open] p')?.textContent)",
    )
    .await;
    b.click("dialog button[data-confirm=yes]").await;
    b.until(
        "the scene's run",
        Duration::from_secs(10),
        "return location.hash.startsWith('#/run/') && document.querySelector('svg.graph .node')",
    )
    .await;
    let run = run_on_page(b).await;
    let settled = s.settle(&run, Duration::from_secs(60)).await;
    assert_eq!(settled["status"], "completed", "{settled}");
    let (_, graph) = s.graph(&run).await;
    let tasks: Vec<&Value> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["nodeType"] == "task")
        .collect();
    let made: BTreeSet<&str> = tasks
        .iter()
        .map(|t| t["assetId"].as_str().unwrap())
        .collect();
    assert_eq!(made, assets, "{graph}");
    assert_eq!(tasks.len(), assets.len(), "{graph}");
    b.until(
        "the scene's tasks on the page",
        Duration::from_secs(10),
        &format!(
            "return document.querySelectorAll('svg.graph .node').length === {}",
            assets.len()
        ),
    )
    .await;
    run
}

/// The account page shows `GET /me`: the balance, and every ledger entry newest first, the
/// older ones a page at a time; `runs` (newest first) each have their charge, negative.
pub async fn account(b: &Browser, s: &Server, runs: &[&str]) {
    // More movements than a page holds: grants of the test's own.
    let pool = s.db.pool().await;
    for i in 1..=21 {
        sqlx::query("select public.move_credits($1, 1, 'grant', null, null, $2)")
            .bind(s.owner)
            .bind(format!("test grant {i}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let (status, me, _) = s.call(Method::GET, "/me?limit=100", None).await;
    assert_eq!(status, 200, "{me}");
    assert!(me["next_offset"].is_null(), "{me}");
    let ledger = me["ledger"].as_array().unwrap();
    assert!(ledger.len() > 21, "{me}");

    b.route("#/account").await;
    b.until(
        "the balance",
        Duration::from_secs(10),
        &format!(
            "return document.querySelector('#tokens')?.textContent === '{}'",
            me["tokens"]
        ),
    )
    .await;
    let rows = "return document.querySelectorAll('#ledger tr').length";
    b.until("the newest movements", Duration::from_secs(10), rows)
        .await;
    loop {
        let shown = b.js(rows).await.as_u64().unwrap();
        if shown as usize >= ledger.len() {
            break;
        }
        assert_eq!(
            b.js("return document.querySelector('#ledger-more').hidden")
                .await,
            json!(false),
            "{shown} of {} movements shown, and no way to the rest",
            ledger.len()
        );
        b.click("#ledger-more").await;
        b.until(
            "older movements",
            Duration::from_secs(10),
            &format!("return document.querySelectorAll('#ledger tr').length > {shown}"),
        )
        .await;
    }
    assert_eq!(
        b.js("return document.querySelector('#ledger-more').hidden")
            .await,
        json!(true)
    );
    let shown = b
        .js("return [...document.querySelectorAll('#ledger tr')].map(tr => { \
               const col = (c) => tr.querySelector(`[data-col=${c}]`).textContent; \
               return {id: Number(tr.dataset.entry), amount: col('amount'), \
                 balance_after: col('balance'), reason: col('reason'), \
                 run_id: tr.querySelector('[data-col=run] a')?.title ?? null, note: col('note')}; })")
        .await;
    let signed = |n: i64| {
        if n > 0 {
            format!("+{n}")
        } else {
            n.to_string()
        }
    };
    let expected: Vec<Value> = ledger
        .iter()
        .map(|e| {
            json!({
                "id": e["id"].clone(),
                "amount": signed(e["amount"].as_i64().unwrap()),
                "balance_after": e["balance_after"].to_string(),
                "reason": e["reason"].as_str().unwrap().replace('_', " "),
                "run_id": e["run_id"].clone(),
                "note": e["note"].as_str().unwrap_or_default(),
            })
        })
        .collect();
    assert_eq!(shown, json!(expected));
    // Newest first: the API's order, which is the order the movements were made in.
    let ids: Vec<i64> = ledger.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(
        me["tokens"], ledger[0]["balance_after"],
        "the balance is the newest entry's"
    );
    assert_eq!(expected[0]["note"], "test grant 21");
    // Each run's charge: negative, listed in the order the runs were started (newest first).
    let charges: Vec<usize> = runs
        .iter()
        .map(|run| {
            let at = expected
                .iter()
                .position(|e| e["reason"] == "run charge" && e["run_id"] == *run)
                .unwrap_or_else(|| panic!("no charge for run {run} in {shown}"));
            assert!(
                expected[at]["amount"].as_str().unwrap().starts_with('-'),
                "{}",
                expected[at]
            );
            at
        })
        .collect();
    assert!(charges.windows(2).all(|w| w[0] < w[1]), "{charges:?}");
}

/// The link the quick start prints opens the console signed in, leaves no code in the
/// address bar, and is worthless the second time.
pub async fn quick_start_link(b: &mut Browser) {
    let quick = QuickStart::start().await;
    let (_, code) = quick.link.split_once("#signin=").unwrap();
    let code = code.to_owned();
    assert_eq!(quick.link, quick.url(&format!("/ui#signin={code}")));
    assert!(!quick.link.contains(&quick.key));

    b.go(&quick.link).await;
    b.until(
        "the console signed in by the link",
        Duration::from_secs(15),
        "return document.querySelector('#dramas') !== null",
    )
    .await;
    assert_eq!(
        b.js("return location.href").await,
        json!(quick.url("/ui#/"))
    );
    assert_eq!(
        b.js("return sessionStorage.getItem('drama.console.token')")
            .await,
        json!(quick.key)
    );
    let again = reqwest::Client::new()
        .post(quick.url("/ui/sign-in"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 401, "a code is redeemed once");

    // The same link once more, signed out: refused, and still not kept in the address bar.
    b.click("#sign-out").await;
    b.element("#credential").await;
    b.go(&quick.link).await;
    b.until(
        "the used link refused",
        Duration::from_secs(15),
        "return document.querySelector('#credential') && /already used/.test(document.querySelector('#notice').textContent)",
    )
    .await;
    assert!(
        !b.js("return location.href")
            .await
            .as_str()
            .unwrap()
            .contains(&code)
    );
    assert_eq!(b.js("return sessionStorage.length").await, json!(0));
    b.assert_clean_console("the quick-start link", |e| network_status(e, 401))
        .await;
}
