//! The one error type of the crate, classified for the job engine: retry or give up.

use std::fmt;
use std::time::Duration;

/// Which backend produced an answer or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Google Generative Language API (text and image).
    Gemini,
    /// OpenAI chat completions (text).
    OpenAi,
    /// The OpenAI-compatible image proxy ("nano banana").
    NanoBanana,
    /// The Sora-style video task API.
    Sora,
    /// The built-in deterministic provider; no network.
    Offline,
}

impl Provider {
    /// Stable lower-case name, used in logs, provenance and cost tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gemini => "gemini",
            Self::OpenAi => "openai",
            Self::NanoBanana => "nano-banana",
            Self::Sora => "sora",
            Self::Offline => "offline",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong when asking a model for something.
///
/// [`AiError::is_retryable`] tells a scheduler whether the same call may succeed later;
/// [`AiError::retry_after`] how long the provider asked us to wait.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AiError {
    /// The requested model name routes to no provider (the API answers 422).
    #[error("unknown model {name:?}; allowed models are {}", allowed.join(", "))]
    UnknownModel {
        /// The name as requested.
        name: String,
        /// The names the catalogue allows.
        allowed: Vec<String>,
    },
    /// The selected provider has no API key configured.
    #[error("{provider} is not configured: set {variable}")]
    NotConfigured {
        /// The provider that was selected.
        provider: Provider,
        /// The environment variable that would configure it.
        variable: &'static str,
    },
    /// Settings that cannot work (bad URL, zero timeout, unknown provider name …).
    #[error("invalid AI configuration: {0}")]
    Config(String),
    /// The caller asked for something no provider can do (too many references, empty prompt …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Connection refused, reset, DNS failure: the request may not have arrived.
    #[error("{provider}: network error: {message}")]
    Network {
        /// Who we were talking to.
        provider: Provider,
        /// What the transport said.
        message: String,
    },
    /// No answer within the configured time.
    #[error("{provider}: no answer within {after:?}")]
    Timeout {
        /// Who we were talking to.
        provider: Provider,
        /// The time limit that was hit.
        after: Duration,
    },
    /// HTTP 429 or a quota error.
    #[error("{provider}: rate limited{}", retry_after_text(*.retry_after))]
    RateLimited {
        /// Who limited us.
        provider: Provider,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// HTTP 5xx.
    #[error("{provider}: server error {status}: {message}")]
    Server {
        /// Who failed.
        provider: Provider,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The key was rejected (HTTP 401/403).
    #[error("{provider}: the API key was rejected ({status}): {message}")]
    Unauthorized {
        /// Who rejected it.
        provider: Provider,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The provider rejected the request itself (HTTP 400, 404, 413, 422 …).
    #[error("{provider}: request rejected ({status}): {message}")]
    BadRequest {
        /// Who rejected it.
        provider: Provider,
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The provider refused the content (moderation, safety, policy).
    #[error("{provider}: refused by moderation: {reason}")]
    Refused {
        /// Who refused.
        provider: Provider,
        /// The provider's reason, verbatim.
        reason: String,
    },
    /// The answer hit the output limit, also after the repair attempt.
    #[error(
        "{provider}: the answer was cut off ({reason}) twice; shorten the premise or ask for fewer episodes"
    )]
    Truncated {
        /// Who answered.
        provider: Provider,
        /// `MAX_TOKENS`, `length` or `unbalanced JSON`.
        reason: String,
    },
    /// The answer does not describe a valid drama, also after the repair attempt.
    #[error("{provider}: the answer breaks the drama rules after a repair attempt: {}", .problems.join("; "))]
    SchemaViolation {
        /// Who answered.
        provider: Provider,
        /// Every problem of the last answer.
        problems: Vec<String>,
    },
    /// The image endpoint answered without an image.
    #[error("{provider}: the answer contains no image: {detail}")]
    NoImage {
        /// Who answered.
        provider: Provider,
        /// What came back instead (shortened).
        detail: String,
    },
    /// A video task ended in failure for a reason other than moderation.
    #[error("{provider}: video task {task_id} failed: {reason}")]
    VideoFailed {
        /// Who ran the task.
        provider: Provider,
        /// The provider's task id.
        task_id: String,
        /// The provider's reason.
        reason: String,
    },
    /// A video task was still not finished when our deadline passed.
    ///
    /// The task may still finish: poll `task_id` again rather than submitting (and paying) twice.
    #[error("{provider}: video task {task_id} not done after {waited:?} (last: {last_status})")]
    VideoDeadline {
        /// Who runs the task.
        provider: Provider,
        /// The provider's task id, to poll again later.
        task_id: String,
        /// The last status seen (`pending` or `running`), or the passing failure of the last
        /// poll or download.
        last_status: String,
        /// How long we polled.
        waited: Duration,
    },
    /// The provider answered something that is not its documented format.
    #[error("{provider}: unexpected answer: {message}")]
    InvalidResponse {
        /// Who answered.
        provider: Provider,
        /// What is wrong with it.
        message: String,
    },
    /// A paid request (an image, a script, a video submission) that the provider may have
    /// taken, and billed, although its product did not reach us (no answer in time, a 408 or a
    /// gateway's 5xx, a reset connection, an answer that cannot be read, a result file that
    /// could not be downloaded): sending it again could pay for the same product twice, so it
    /// is permanent.
    #[error(
        "{provider}: the request may have been accepted and billed, so it is not sent again: {cause}"
    )]
    SubmitUncertain {
        /// Who was asked.
        provider: Provider,
        /// What happened to the request.
        cause: String,
    },
    /// The file the provider's answer points at is not fetched: a URL the download rules
    /// refuse (not https, a private address, too many redirects) or a body above its size
    /// cap. Asking again would point at the same kind of file, so it is permanent.
    #[error("{provider}: result file refused: {message}")]
    FileRefused {
        /// Who answered.
        provider: Provider,
        /// Which rule refused it.
        message: String,
    },
}

fn retry_after_text(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| format!(", retry after {d:?}"))
}

impl AiError {
    /// Whether the same call may succeed if made again later.
    ///
    /// Transient: network, timeouts, 429, 5xx, an unexpected (garbled) answer, an image answer
    /// without an image, a failed or overdue video task. Permanent: configuration, unknown model,
    /// invalid request, rejected key, bad request, moderation refusal, schema violation or
    /// truncation after the repair attempt, a paid request that may have been accepted.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network { .. }
            | Self::Timeout { .. }
            | Self::RateLimited { .. }
            | Self::Server { .. }
            | Self::NoImage { .. }
            | Self::VideoFailed { .. }
            | Self::VideoDeadline { .. }
            | Self::InvalidResponse { .. } => true,
            Self::UnknownModel { .. }
            | Self::NotConfigured { .. }
            | Self::Config(_)
            | Self::InvalidRequest(_)
            | Self::Unauthorized { .. }
            | Self::BadRequest { .. }
            | Self::Refused { .. }
            | Self::Truncated { .. }
            | Self::SchemaViolation { .. }
            | Self::SubmitUncertain { .. }
            | Self::FileRefused { .. } => false,
        }
    }

    /// How long the provider asked us to wait before trying again, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The provider involved, when there is one.
    pub fn provider(&self) -> Option<Provider> {
        match self {
            Self::NotConfigured { provider, .. }
            | Self::Network { provider, .. }
            | Self::Timeout { provider, .. }
            | Self::RateLimited { provider, .. }
            | Self::Server { provider, .. }
            | Self::Unauthorized { provider, .. }
            | Self::BadRequest { provider, .. }
            | Self::Refused { provider, .. }
            | Self::Truncated { provider, .. }
            | Self::SchemaViolation { provider, .. }
            | Self::NoImage { provider, .. }
            | Self::VideoFailed { provider, .. }
            | Self::VideoDeadline { provider, .. }
            | Self::InvalidResponse { provider, .. }
            | Self::SubmitUncertain { provider, .. }
            | Self::FileRefused { provider, .. } => Some(*provider),
            Self::UnknownModel { .. } | Self::Config(_) | Self::InvalidRequest(_) => None,
        }
    }

    /// A stable machine code for logs, job records and API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownModel { .. } => "unknown_model",
            Self::NotConfigured { .. } => "provider_not_configured",
            Self::Config(_) => "ai_config",
            Self::InvalidRequest(_) => "invalid_ai_request",
            Self::Network { .. } => "provider_network",
            Self::Timeout { .. } => "provider_timeout",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::Server { .. } => "provider_server_error",
            Self::Unauthorized { .. } => "provider_unauthorized",
            Self::BadRequest { .. } => "provider_bad_request",
            Self::Refused { .. } => "moderation_refusal",
            Self::Truncated { .. } => "output_truncated",
            Self::SchemaViolation { .. } => "schema_violation",
            Self::NoImage { .. } => "no_image",
            Self::VideoFailed { .. } => "video_failed",
            Self::VideoDeadline { .. } => "video_deadline",
            Self::InvalidResponse { .. } => "provider_invalid_response",
            Self::SubmitUncertain { .. } => "provider_submit_uncertain",
            Self::FileRefused { .. } => "provider_file_refused",
        }
    }
}

/// Shortens provider text for error messages (bodies can be megabytes of base64).
pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().take(max_chars).collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}
/// Whether a provider's words describe a moderation or safety refusal.
pub(crate) fn looks_like_moderation(text: &str) -> bool {
    const WORDS: [&str; 12] = [
        "moderation",
        "content policy",
        "content_policy",
        "safety",
        "violat",
        "prohibited",
        "sensitive",
        "inappropriate",
        "nsfw",
        "blocked",
        "policy",
        "not allowed",
    ];
    let lower = text.to_lowercase();
    WORDS.iter().any(|w| lower.contains(w))
}
