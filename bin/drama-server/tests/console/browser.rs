//! Headless Chromium driven through chromedriver (WebDriver) with fantoccini: finding the
//! binaries, starting the driver, waiting for the page, reading the browser's console log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::free_port;

/// The first of `names` found in `$var`, on PATH or in Debian's places.
fn find(var: &str, names: &[&str]) -> PathBuf {
    if let Ok(path) = std::env::var(var)
        && Path::new(&path).is_file()
    {
        return PathBuf::from(path);
    }
    let dirs = std::env::var("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&dirs).chain([PathBuf::from("/usr/lib/chromium")]) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no {} found (set {var}); scripts/test installs Debian's chromium and chromium-driver, \
         or: apt-get install chromium chromium-driver",
        names.join(" or ")
    );
}

/// `POST /session/{id}/se/log` (chromedriver): the browser's console entries since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// One headless browser; its session is closed (which ends the browser) and the driver killed
/// when this is dropped, also when a test fails.
pub struct Browser {
    pub client: Client,
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
    /// Console entries read so far that a test allowed (kept for the report on failure).
    pub seen: Vec<Value>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing chromedriver would leave its browser running: delete the session first. Drop
        // cannot await, and the test's runtime may be unwinding: a thread of its own does it.
        let url = format!("http://127.0.0.1:{}/session/{}", self.port, self.session);
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            // The request is made inside the runtime: its timeout needs the runtime's timer.
            let _ = runtime.block_on(async move {
                reqwest::Client::new()
                    .delete(url)
                    .timeout(Duration::from_secs(20))
                    .send()
                    .await
            });
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    pub async fn start(width: u32, height: u32) -> Self {
        let chrome = find(
            "CHROME_BIN",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let chromedriver = find("CHROMEDRIVER", &["chromedriver"]);
        let port = free_port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chrome,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--autoplay-policy=no-user-gesture-required",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        });
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let mut builder = ClientBuilder::new(connector.clone());
            builder.capabilities(caps.as_object().unwrap().clone());
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) => {
                    if let Some(status) = driver.try_wait().unwrap() {
                        panic!("chromedriver exited with {status}");
                    }
                    assert!(Instant::now() < deadline, "no browser session: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let session = client.session_id().await.unwrap().unwrap_or_default();
        Self {
            client,
            driver,
            port,
            session,
            _profile: profile,
            seen: Vec::new(),
        }
    }

    /// Runs a script in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` returns a truthy value (checked every 100 ms); returns it.
    pub async fn until(&self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let page = self
                    .js("return document.querySelector('main').innerText")
                    .await;
                panic!("timed out waiting for {what}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element matching `css`, once it exists.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.until(
            css,
            Duration::from_secs(20),
            &format!("return document.querySelector({})", json!(css)),
        )
        .await;
        self.client.find(Locator::Css(css)).await.unwrap()
    }

    /// Runs `act` on the element matching `css`, finding it again when the page redrew it
    /// between the lookup and the action (the console re-renders a panel on every live event,
    /// so a found element can go stale before it is read).
    async fn on_element<T, F, Fut>(&self, css: &str, act: F) -> T
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let mut attempts = 0;
        loop {
            let element = self.element(css).await;
            match act(element).await {
                Ok(value) => return value,
                Err(error) if is_stale(&error) && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("{css}: {error}"),
            }
        }
    }

    pub async fn click(&self, css: &str) {
        self.on_element(
            css,
            |element| async move { element.click().await.map(|_| ()) },
        )
        .await
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, |element| async move {
            element.clear().await?;
            element.send_keys(text).await
        })
        .await
    }

    pub async fn text(&self, css: &str) -> String {
        self.on_element(css, |element| async move { element.text().await })
            .await
    }

    pub async fn go(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Navigates inside the console (a fragment change: no reload; the same fragment again
    /// redraws the page, as following its link does).
    pub async fn route(&self, hash: &str) {
        self.js(&format!(
            "if (location.hash === {0}) {{ window.dispatchEvent(new HashChangeEvent('hashchange')); }} \
             else {{ location.hash = {0}; }} return true",
            json!(hash)
        ))
        .await;
    }

    /// Writes a PNG of the window.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The console entries since the last call.
    pub async fn log(&self) -> Vec<Value> {
        match self.client.issue_cmd(BrowserLog).await.unwrap() {
            Value::Array(entries) => entries,
            other => panic!("unexpected log answer: {other}"),
        }
    }

    /// Fails on any error or warning the page logged since the last call, except entries for
    /// which `allowed` says yes (e.g. the 409 a conflict test provokes on purpose).
    pub async fn assert_clean_console(&mut self, step: &str, allowed: impl Fn(&Value) -> bool) {
        let entries = self.log().await;
        let bad: Vec<&Value> = entries
            .iter()
            .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
            .filter(|e| !allowed(e))
            .collect();
        assert!(
            bad.is_empty(),
            "the browser console reported problems during {step}: {bad:#?}"
        );
        self.seen.extend(entries);
    }
}

/// Network entries for responses a step provokes on purpose (e.g. a 409 for a stale edit).
pub fn network_status(entry: &Value, status: u16) -> bool {
    entry["source"] == "network"
        && entry["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("status of {status}")))
}

/// Whether a WebDriver error says the element left the page.
fn is_stale(error: &fantoccini::error::CmdError) -> bool {
    matches!(
        error,
        fantoccini::error::CmdError::Standard(e)
            if e.error == fantoccini::error::ErrorStatus::StaleElementReference
    )
}
