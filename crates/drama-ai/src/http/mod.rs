//! The HTTP clients and what they share: one reqwest client per provider, status classification,
//! `Retry-After`. Compiled with the cargo feature `providers`.

pub mod fetch;
pub mod gemini;
pub(crate) mod image;
pub mod nano_banana;
pub mod openai;
pub mod sora;

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::error::{AiError, Provider, looks_like_moderation, shorten};
use crate::retry::RetryPolicy;
use crate::settings::{AiSettings, ApiKey};

/// A provider's key, or the error that names the variable it is set by.
pub(crate) fn required_key(
    provider: Provider,
    key: Option<&ApiKey>,
    variable: &'static str,
) -> Result<ApiKey, AiError> {
    key.cloned()
        .ok_or(AiError::NotConfigured { provider, variable })
}

/// How a provider's calls carry its key.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer <key>` (OpenAI and the APIs built like it).
    Bearer(&'a ApiKey),
    /// `x-goog-api-key: <key>` (Gemini).
    GoogleKey(&'a ApiKey),
}

impl Auth<'_> {
    fn apply(self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Self::Bearer(key) => request.bearer_auth(key.expose()),
            Self::GoogleKey(key) => request.header("x-goog-api-key", key.expose()),
        }
    }
}

/// Which of the configured limits bounds one request of a provider's main call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallKind {
    /// A text completion (`TEXT_TIMEOUT_SECS`).
    Text,
    /// An image drawn while the request waits (`IMAGE_TIMEOUT_SECS`).
    Image,
    /// One request of a video task: submit or poll (`VIDEO_REQUEST_TIMEOUT_SECS`).
    VideoRequest,
}

impl CallKind {
    fn timeout(self, settings: &AiSettings) -> Duration {
        Duration::from_secs(match self {
            Self::Text => settings.text_timeout_secs,
            Self::Image => settings.image_timeout_secs,
            Self::VideoRequest => settings.video_request_timeout_secs,
        })
    }
}

/// A request that failed, and whether the failure proves that the provider did not take it.
struct Failure {
    error: AiError,
    /// The request never reached the provider, or the provider answered that it refused it.
    refused: bool,
}

/// Transport settings shared by a provider's calls.
#[derive(Debug, Clone)]
pub(crate) struct HttpCore {
    pub provider: Provider,
    pub client: reqwest::Client,
    pub retry: RetryPolicy,
    /// Limit for one request/response of the provider's main call.
    pub timeout: Duration,
    /// How result files are downloaded (and which are refused).
    pub downloads: fetch::Downloads,
}

impl HttpCore {
    /// The transport of `provider` under `settings`, its main call limited by the timeout of
    /// its `kind`.
    pub(crate) fn new(
        provider: Provider,
        settings: &AiSettings,
        kind: CallKind,
    ) -> Result<Self, AiError> {
        let timeout = kind.timeout(settings);
        let downloads = fetch::Downloads::new(settings)?;
        let retry = settings.retry_policy();
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .user_agent(concat!("drama-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                AiError::Config(format!("cannot build the {provider} HTTP client: {e}"))
            })?;
        Ok(Self {
            provider,
            client,
            retry,
            timeout,
            downloads,
        })
    }

    /// Sends one request and returns its JSON body, classifying every failure.
    pub(crate) async fn send_json(
        &self,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<Value, AiError> {
        self.exchange(request, timeout).await.map_err(|f| f.error)
    }

    /// [`HttpCore::send_json`], saying of a failure whether it proves that the provider did
    /// not take the request.
    async fn exchange(&self, request: RequestBuilder, timeout: Duration) -> Result<Value, Failure> {
        let response = request.timeout(timeout).send().await.map_err(|e| Failure {
            // A connection that was never made carried no request. Anything later (a timeout
            // waiting for the answer, a reset) may have followed a request the provider took.
            refused: e.is_connect(),
            error: self.transport_error(&e, timeout),
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| Failure {
            refused: false,
            error: self.transport_error(&e, timeout),
        })?;
        if !status.is_success() {
            return Err(Failure {
                refused: refused_by_provider(status, &body),
                error: self.status_error(status, &headers, &body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Failure {
            refused: false,
            error: AiError::InvalidResponse {
                provider: self.provider,
                message: format!(
                    "the body is not JSON ({e}): {}",
                    shorten(&String::from_utf8_lossy(&body), 200)
                ),
            },
        })
    }

    /// POSTs a paid request (an image, a script, a video submission) as JSON to `url` and hands
    /// the JSON answer to `read`; also answers how many requests were sent.
    ///
    /// The provider bills a request it took whether or not its answer arrives, so the request
    /// is sent again only after a failure that proves the provider did not take it or did not
    /// do the work (see [`refused_by_provider`]): a connection never made, a 4xx answer (a 429
    /// waits and is retried, the others are permanent), a 5xx answer in the provider's own
    /// error format other than a gateway's 502 or 504, a 2xx that carries the provider's error
    /// envelope ([`Self::envelope_error`]), or an answer that came without the product
    /// ([`AiError::NoImage`]: the call is over and gave nothing, so asking again is a new call,
    /// not a repeat of one whose product we lost). Any other failure — no answer in time after
    /// the request went out, a 408, a gateway's 5xx, a reset connection, a success whose answer
    /// cannot be read or whose file cannot be downloaded — leaves a product the provider may
    /// have made and billed, out of reach: the call ends as [`AiError::SubmitUncertain`], which
    /// nobody retries (neither here nor the job engine), rather than paying for it again.
    pub(crate) async fn post_json<T, F, Fut>(
        &self,
        url: &str,
        auth: Auth<'_>,
        body: &Value,
        read: F,
    ) -> Result<(T, u32), AiError>
    where
        F: Fn(Value) -> Fut,
        Fut: Future<Output = Result<T, AiError>>,
    {
        let mut attempts = 0;
        let read = &read;
        let out = self
            .retry
            .run(|_| {
                attempts += 1;
                let request = auth.apply(self.client.post(url)).json(body);
                async move {
                    let answer = self.exchange(request, self.timeout).await.map_err(|f| {
                        if f.refused {
                            f.error
                        } else {
                            self.uncertain(&f.error)
                        }
                    })?;
                    let envelope = self.envelope_error(&answer);
                    read(answer).await.map_err(|e| match envelope {
                        Some(refusal) => refusal,
                        None if answered_without_product(&e) => e,
                        None => self.uncertain(&e),
                    })
                }
            })
            .await?;
        Ok((out, attempts))
    }

    /// [`post_json`](Self::post_json) answering the JSON as it came.
    pub(crate) async fn post_for_json(
        &self,
        url: &str,
        auth: Auth<'_>,
        body: &Value,
    ) -> Result<(Value, u32), AiError> {
        self.post_json(url, auth, body, |answer| async { Ok(answer) })
            .await
    }

    /// The provider's error carried by a 2xx answer that holds no product: `{"error":
    /// {"message", "code"?, "type"?, "status"?}}` or `{"error": "text"}`, the envelope of its
    /// error answers. It is classified as if it had come with the status it names (a number in
    /// 400–599 as its `code` or `status`); without one, by its words: a rate limit as a 429, a
    /// timeout as a 504, another passing failure (server error, overloaded, busy, try again) as
    /// a 500, anything else as a 400 (a refusal when its words are moderation's). `None` when
    /// the answer has no such envelope. An envelope that names a 408, 502 or 504 — a gateway
    /// or someone on the way saying it stopped waiting for a provider that may have taken the
    /// request — proves nothing was taken, as the same statuses do not ([`refused_by_provider`]):
    /// it is [`AiError::SubmitUncertain`].
    fn envelope_error(&self, answer: &Value) -> Option<AiError> {
        let status = envelope_status(answer)?;
        let error = self.status_error(status, &HeaderMap::new(), answer.to_string().as_bytes());
        Some(
            if matches!(
                status,
                StatusCode::REQUEST_TIMEOUT | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
            ) {
                self.uncertain(&error)
            } else {
                error
            },
        )
    }

    /// The provider's error carried by a 2xx answer to a request that costs nothing (a poll of
    /// a task), classified as [`Self::envelope_error`] does, without the doubt of a paid
    /// request: a 408, 502 or 504 is a passing failure like any other.
    pub(crate) fn free_envelope_error(&self, answer: &Value) -> Option<AiError> {
        let status = envelope_status(answer)?;
        Some(self.status_error(status, &HeaderMap::new(), answer.to_string().as_bytes()))
    }

    fn uncertain(&self, cause: &AiError) -> AiError {
        AiError::SubmitUncertain {
            provider: self.provider,
            cause: cause.to_string(),
        }
    }

    /// Downloads a result file (retried like any call), refusing an empty body, a URL the
    /// download rules refuse (see `fetch`) and a body above the cap for `kind`.
    pub(crate) async fn download(
        &self,
        url: &str,
        kind: fetch::FileKind,
    ) -> Result<(Bytes, Option<String>), AiError> {
        let provider = self.provider;
        let timeout = self.downloads.timeout;
        self.retry
            .run(|_| async move {
                let (status, headers, body) = self
                    .downloads
                    .get(provider, url, kind)
                    .await?
                    .map_err(|e| self.transport_error(&e, timeout))?;
                if !status.is_success() {
                    return Err(self.status_error(status, &headers, &body));
                }
                if body.is_empty() {
                    return Err(AiError::InvalidResponse {
                        provider,
                        message: format!("the file at {url} is empty"),
                    });
                }
                let content_type = headers
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
                Ok((body, content_type))
            })
            .await
    }

    fn transport_error(&self, e: &reqwest::Error, timeout: Duration) -> AiError {
        if e.is_timeout() {
            AiError::Timeout {
                provider: self.provider,
                after: timeout,
            }
        } else {
            AiError::Network {
                provider: self.provider,
                message: error_chain(e),
            }
        }
    }

    /// Classifies a non-success status.
    pub(crate) fn status_error(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> AiError {
        let provider = self.provider;
        let text = String::from_utf8_lossy(body);
        let message = provider_message(&text);
        match status.as_u16() {
            429 => AiError::RateLimited {
                provider,
                retry_after: retry_after(headers).or_else(|| gemini_retry_delay(&text)),
            },
            401 | 403 => AiError::Unauthorized {
                provider,
                status: status.as_u16(),
                message,
            },
            500..=599 => AiError::Server {
                provider,
                status: status.as_u16(),
                message,
            },
            _ if looks_like_moderation(&message) => AiError::Refused {
                provider,
                reason: message,
            },
            408 => AiError::Timeout {
                provider,
                after: self.timeout,
            },
            code => AiError::BadRequest {
                provider,
                status: code,
                message,
            },
        }
    }
}

/// The status a 2xx answer's error envelope names (see [`HttpCore::envelope_error`]), or
/// `None` when the answer carries no such envelope.
fn envelope_status(answer: &Value) -> Option<StatusCode> {
    let error = answer.get("error").filter(|e| match e {
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.trim().is_empty(),
        _ => false,
    })?;
    let named = ["code", "status"].iter().find_map(|k| {
        let v = error.get(*k)?;
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|n| (400..=599).contains(n))
    });
    let status = named.unwrap_or_else(|| {
        let words = error.to_string().to_lowercase();
        let said = |list: &[&str]| list.iter().any(|w| words.contains(w));
        if said(&[
            "rate limit",
            "rate_limit",
            "too many requests",
            "resource_exhausted",
        ]) {
            429
        } else if said(&["timeout", "timed out", "deadline"]) {
            504
        } else if said(&[
            "server_error",
            "server error",
            "internal",
            "unavailable",
            "overloaded",
            "busy",
            "try again",
        ]) {
            500
        } else {
            400
        }
    });
    Some(
        u16::try_from(status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::BAD_REQUEST),
    )
}

/// The text of an error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The `error.message` of an OpenAI/Gemini error body, or the body itself, shortened.
/// Whether a non-success answer proves that the provider did not take the request, or did not
/// do its work: a 4xx turns it down (a 408 only says that someone on the way stopped waiting);
/// a 5xx in the provider's own error format (`{"error": …}`) is the provider saying that it
/// failed, which it does not bill — unless it is a 502 or 504, the statuses of a gateway in
/// front of a provider that may have taken the request (some gateways answer in the same
/// format). A 5xx in another format (an HTML page) comes from someone on the way.
fn refused_by_provider(status: StatusCode, body: &[u8]) -> bool {
    if status.is_client_error() {
        return status != StatusCode::REQUEST_TIMEOUT;
    }
    status.is_server_error()
        && !matches!(
            status,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        )
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").map(|e| !e.is_null()))
            .unwrap_or(false)
}

/// Whether `read` failed because the call's answer holds no product (no image, a refusal, a
/// file the download rules refuse), as opposed to an answer or file that did not arrive or
/// could not be read.
fn answered_without_product(e: &AiError) -> bool {
    matches!(
        e,
        AiError::NoImage { .. } | AiError::Refused { .. } | AiError::FileRefused { .. }
    )
}

fn provider_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        let error = v.get("error")?;
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())?;
        let code = error
            .get("code")
            .and_then(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .or_else(|| Some(c.to_string()))
            })
            .filter(|c| c != "null");
        Some(match code {
            Some(code) => format!("{message} ({code})"),
            None => message.to_owned(),
        })
    });
    shorten(&message.unwrap_or_else(|| body.trim().to_owned()), 500)
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return seconds_advice(seconds);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Gemini puts its advice in the body: `details[].retryDelay: "7s"`.
fn gemini_retry_delay(body: &str) -> Option<Duration> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.pointer("/error/details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay")?.as_str())
        .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        .and_then(seconds_advice)
}

/// A provider's wait in seconds: none when it is negative or not finite; one too long for a
/// `Duration` (`Duration::from_secs_f64` panics above about 1.8e19) is the longest there is, and
/// the job engine bounds what it waits anyway.
fn seconds_advice(seconds: f64) -> Option<Duration> {
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

/// Builds the URL `base` + `path`, tolerating a trailing slash on the base.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn advice_too_long_for_a_duration_is_the_longest_wait() {
        let mut h = HeaderMap::new();
        for huge in ["1e20", "1e300"] {
            h.insert(reqwest::header::RETRY_AFTER, huge.parse().unwrap());
            assert_eq!(retry_after(&h), Some(Duration::MAX), "{huge}");
        }
        for bad in ["-1", "inf", "NaN"] {
            h.insert(reqwest::header::RETRY_AFTER, bad.parse().unwrap());
            assert_eq!(retry_after(&h), None, "{bad}");
        }
        let body = r#"{"error":{"details":[{"retryDelay":"1e20s"}]}}"#;
        assert_eq!(gemini_retry_delay(body), Some(Duration::MAX));
        assert_eq!(
            gemini_retry_delay(r#"{"error":{"details":[{"retryDelay":"NaNs"}]}}"#),
            None
        );
    }

    #[test]
    fn gemini_retry_delay_is_read_from_the_body() {
        let body = r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}]}}"#;
        assert_eq!(gemini_retry_delay(body), Some(Duration::from_secs(12)));
    }
}
