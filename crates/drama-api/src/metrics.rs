//! `/metrics` in the Prometheus text format, and the access log.
//!
//! This module counts what the HTTP layer sees: requests by method, route pattern (never the
//! raw path, so the number of series stays bounded) and status, with a latency histogram per
//! route. Everything else (jobs, queues, provider calls, spend, pool use) is rendered by a
//! [`MetricsSource`] the server passes in, because it is read from where it lives (the
//! database, the pool) rather than held here.
//!
//! Wrap [`observe`] inside [`crate::middleware::request_context`] so every access-log line
//! carries the request id.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, HttpRequest, HttpResponse, web};
use async_trait::async_trait;
use subtle::ConstantTimeEq as _;

use crate::error::{ApiError, ErrorCode};
use crate::headers::header_text;

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

#[derive(Default)]
struct Series {
    /// Requests per status code.
    by_status: BTreeMap<u16, u64>,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`], then the total.
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counters and latency histograms, shared by every worker thread.
#[derive(Default)]
pub struct HttpMetrics {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl HttpMetrics {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one answered request.
    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut all = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = all
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *s.by_status.entry(status).or_default() += 1;
        for (bucket, bound) in s.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        s.count += 1;
        s.sum += seconds;
    }

    /// Appends the request metrics in the text format.
    pub fn render(&self, out: &mut String) {
        let all = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP drama_http_requests_total HTTP requests answered, by method, route and status.\n\
             # TYPE drama_http_requests_total counter"
        );
        for ((method, route), s) in all.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "drama_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP drama_http_request_duration_seconds Time to answer a request (to its \
             headers; streams count until they start), by method and route.\n\
             # TYPE drama_http_request_duration_seconds histogram"
        );
        for ((method, route), s) in all.iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (bound, n) in LATENCY_BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "drama_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "drama_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 drama_http_request_duration_seconds_sum{{{labels}}} {}\n\
                 drama_http_request_duration_seconds_count{{{labels}}} {}",
                s.count, s.sum, s.count
            );
        }
    }
}

/// A label value with `\`, `"` and newlines escaped as the format requires.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// More metrics for `/metrics`, gathered when it is scraped.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Appends metrics in the text format; a failure is rendered as
    /// `drama_metrics_source_up 0` by the caller, and the rest of the answer still goes out.
    async fn render(&self, out: &mut String) -> Result<(), String>;
}

/// What `/metrics` serves, and who may read it.
#[derive(Clone)]
pub struct MetricsEndpoint {
    /// The request metrics.
    pub http: Arc<HttpMetrics>,
    /// Everything else.
    pub sources: Vec<Arc<dyn MetricsSource>>,
    /// A bearer token the scraper must send; `None`: open.
    pub token: Option<String>,
}

/// Records each request in the [`HttpMetrics`] registered as app data, and writes one
/// info-level access-log line per request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let response = next.call(req).await?;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED.to_owned());
    if let Some(metrics) = metrics {
        metrics.record(&method, &route, status, seconds);
    }
    let duration_ms = (seconds * 1e4).round() / 10.0;
    tracing::info!(method = %method, route = %route, path = %path, status, duration_ms, "access");
    Ok(response)
}

fn authorised(req: &HttpRequest, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let presented = header_text(req.headers(), header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

async fn serve_metrics(req: HttpRequest, endpoint: web::Data<MetricsEndpoint>) -> HttpResponse {
    if !authorised(&req, endpoint.token.as_deref()) {
        let refusal = ApiError::object(
            ErrorCode::Unauthenticated,
            "Unauthorized",
            "/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
        );
        let mut response = actix_web::ResponseError::error_response(&refusal);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let mut out = String::with_capacity(16 * 1024);
    endpoint.http.render(&mut out);
    let mut up = Vec::new();
    for (i, source) in endpoint.sources.iter().enumerate() {
        let ok = match source.render(&mut out).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "a metrics source failed");
                false
            }
        };
        up.push((i, ok));
    }
    let _ = writeln!(
        out,
        "# HELP drama_metrics_source_up Whether each metrics source answered this scrape.\n\
         # TYPE drama_metrics_source_up gauge"
    );
    for (i, ok) in up {
        let _ = writeln!(
            out,
            "drama_metrics_source_up{{source=\"{i}\"}} {}",
            u8::from(ok)
        );
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// Registers `GET /metrics` (and the registry the [`observe`] middleware records into).
pub fn configure(endpoint: MetricsEndpoint) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let http = web::Data::from(endpoint.http.clone());
        cfg.app_data(http)
            .app_data(web::Data::new(endpoint))
            .route("/metrics", web::get().to(serve_metrics));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = HttpMetrics::default();
        m.record("GET", "/dramas/{drama_id}", 200, 0.004);
        m.record("GET", "/dramas/{drama_id}", 200, 0.2);
        m.record("GET", "/dramas/{drama_id}", 404, 40.0);
        m.record("GET", "a\"b", 200, 0.0);
        let mut out = String::new();
        m.render(&mut out);
        let route = r#"method="GET",route="/dramas/{drama_id}""#;
        for (le, n) in [("0.005", 1), ("0.25", 2), ("30", 2), ("+Inf", 3)] {
            let line =
                format!("drama_http_request_duration_seconds_bucket{{{route},le=\"{le}\"}} {n}");
            assert!(out.contains(&line), "{line} missing:\n{out}");
        }
        assert!(out.contains(&format!(
            "drama_http_requests_total{{{route},status=\"404\"}} 1"
        )));
        assert!(out.contains(r#"route="a\"b""#), "{out}");
    }
}
