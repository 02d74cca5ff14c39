//! The Sora-style video task API.
//!
//! Submit `POST {SORA_API_BASE}/v2/videos/generations`, poll
//! `GET {SORA_API_BASE}/v2/videos/generations/{task_id}`, download the URL the finished task
//! names. Status words (upper-cased): `COMPLETED|SUCCESS|SUCCEEDED|DONE` → done,
//! `FAILED|FAILURE|ERROR` and the words of a task that ended without a video
//! (`CANCELLED|CANCELED|EXPIRED|REJECTED|TIMEOUT|TIMED_OUT`) → failed,
//! `IN_PROGRESS|RUNNING|PROCESSING` → running, anything else (`NOT_START`, `SUBMITTED`,
//! `QUEUED` …) → pending. An answer without a status that carries the provider's error
//! envelope (`{"error": …}`) is that error, as a submission's is.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::{AiError, Provider, shorten};
use crate::http::{Auth, CallKind, HttpCore, join, required_key};
use crate::prompts::{self, PROMPT_VERSION};
use crate::settings::{AiSettings, ApiKey};
use crate::traits::{VideoModel, VideoPolling};
use crate::types::{GeneratedVideo, VideoOutput, VideoRequest, VideoStatus, VideoTask, sniff_mime};
use crate::usage::{Generated, ModelInfo, Usage};

const PROVIDER: Provider = Provider::Sora;

/// The Sora task API as a [`VideoModel`].
///
/// # Errors
/// [`AiError::NotConfigured`] without `SORA_API_KEY`; [`AiError::Config`] for bad settings.
pub fn video_model(settings: &AiSettings) -> Result<Arc<dyn VideoModel>, AiError> {
    let key = required_key(PROVIDER, settings.sora_api_key.as_ref(), "SORA_API_KEY")?;
    let core = HttpCore::new(PROVIDER, settings, CallKind::VideoRequest)?;
    Ok(Arc::new(Sora {
        core,
        key,
        base: settings.sora_api_base.clone(),
        model: settings.sora_model.clone(),
        aspect_ratio: settings.default_aspect_ratio.clone(),
        hd: settings.sora_hd,
        polling: settings.video_polling(),
    }))
}

struct Sora {
    core: HttpCore,
    key: ApiKey,
    base: String,
    model: String,
    aspect_ratio: String,
    hd: bool,
    polling: VideoPolling,
}

/// The task id of a submit answer, when it is one that fits in a URL path.
fn task_id_of(answer: &Value) -> Result<String, AiError> {
    let task_id = answer
        .get("task_id")
        .or_else(|| answer.pointer("/data/task_id"))
        .or_else(|| answer.get("id"))
        .and_then(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .ok_or_else(|| AiError::InvalidResponse {
            provider: PROVIDER,
            message: format!(
                "the submit answer has no task_id: {}",
                shorten(&answer.to_string(), 300)
            ),
        })?;
    if task_id.contains(['/', '?', '#']) {
        return Err(AiError::InvalidResponse {
            provider: PROVIDER,
            message: format!("task id {task_id:?} cannot be used in a URL path"),
        });
    }
    Ok(task_id)
}

/// The task of a status answer (some deployments wrap it in `data`) and its status word,
/// upper-cased (empty when there is none).
fn task_and_word(answer: &Value) -> (&Value, String) {
    let task = if answer.get("status").is_none() && answer.pointer("/data/status").is_some() {
        answer.get("data").unwrap_or(answer)
    } else {
        answer
    };
    let word = task
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_uppercase();
    (task, word)
}

/// Reads a status answer.
fn status_of(answer: &Value) -> Result<VideoStatus, AiError> {
    let (task, word) = task_and_word(answer);
    Ok(match word.as_str() {
        "COMPLETED" | "SUCCESS" | "SUCCEEDED" | "DONE" => {
            let url = [
                "/data/output",
                "/video_url",
                "/url",
                "/output_url",
                "/output",
                "/data/video_url",
                "/data/url",
            ]
            .iter()
            .find_map(|p| task.pointer(p).and_then(Value::as_str))
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| AiError::InvalidResponse {
                provider: PROVIDER,
                message: format!(
                    "the task is {word} but names no video URL: {}",
                    shorten(&answer.to_string(), 300)
                ),
            })?;
            VideoStatus::Done {
                output: VideoOutput::Url(url.to_owned()),
            }
        }
        // A task cancelled, expired, rejected or timed out at the provider ended without a
        // video as a failed one did: polling it until our deadline, attempt after attempt,
        // would only hold a video slot.
        "FAILED" | "FAILURE" | "ERROR" | "CANCELLED" | "CANCELED" | "EXPIRED" | "REJECTED"
        | "TIMEOUT" | "TIMED_OUT" => VideoStatus::Failed {
            reason: ["fail_reason", "error", "message"]
                .iter()
                .find_map(|k| match task.get(*k) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(Value::Object(o)) => {
                        o.get("message").and_then(Value::as_str).map(str::to_owned)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| format!("the task is {word}, with no reason given")),
        },
        "IN_PROGRESS" | "RUNNING" | "PROCESSING" => VideoStatus::Running {
            progress: progress_of(task.get("progress")),
        },
        _ => VideoStatus::Pending,
    })
}

/// `"45%"`, `45`, `0.45` → 45.
fn progress_of(value: Option<&Value>) -> Option<u8> {
    let number = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().trim_end_matches('%').trim().parse::<f64>().ok()?,
        _ => return None,
    };
    let percent = if number > 0.0 && number < 1.0 {
        number * 100.0
    } else {
        number
    };
    let clamped = percent.clamp(0.0, 100.0).round();
    // Clamped to 0..=100 above, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(clamped as u8)
}

#[async_trait]
impl VideoModel for Sora {
    fn model(&self) -> ModelInfo {
        ModelInfo::new(PROVIDER, &self.model)
    }

    fn polling(&self) -> VideoPolling {
        self.polling
    }

    #[tracing::instrument(skip_all, fields(provider = "sora", duration = request.duration.seconds()))]
    async fn submit(&self, request: &VideoRequest) -> Result<Generated<VideoTask>, AiError> {
        if request.prompt.trim().is_empty() {
            return Err(AiError::InvalidRequest(
                "the video prompt is empty".to_owned(),
            ));
        }
        let mut body = json!({
            "prompt": prompts::video_prompt(&request.prompt, request.reference.is_some()),
            "model": self.model,
            "aspect_ratio": self.aspect_ratio,
            "duration": request.duration.seconds().to_string(),
            "hd": self.hd
        });
        if let Some(reference) = &request.reference {
            let image = reference
                .url
                .clone()
                .unwrap_or_else(|| reference.data_url());
            body["images"] = json!([image]);
        }
        let url = join(&self.base, "/v2/videos/generations");
        // Each accepted submission is a paid render, and the answer is its only handle: a
        // submission whose answer is lost or unreadable is not sent again (`post_json`). An
        // answer that carries the provider's error envelope is that error, even when it also
        // has an `id` (the error's, or the request's): no task was created.
        let core = &self.core;
        let (task_id, attempts) = core
            .post_json(&url, Auth::Bearer(&self.key), &body, |answer| async move {
                match core.envelope_error(&answer) {
                    Some(refusal) => Err(refusal),
                    None => task_id_of(&answer),
                }
            })
            .await?;
        tracing::info!(%task_id, "video task submitted");
        Ok(Generated {
            output: VideoTask {
                task_id,
                duration: request.duration,
            },
            usage: Usage {
                video_seconds: request.duration.seconds(),
                requests: attempts,
                ..Usage::default()
            },
            model: self.model(),
            prompt_version: PROMPT_VERSION,
        })
    }

    async fn poll(&self, task_id: &str) -> Result<VideoStatus, AiError> {
        if task_id.is_empty() || task_id.contains(['/', '?', '#']) {
            return Err(AiError::InvalidRequest(format!("bad task id {task_id:?}")));
        }
        let url = join(&self.base, &format!("/v2/videos/generations/{task_id}"));
        let answer = self
            .core
            .retry
            .run(|_| async {
                let http = self.core.client.get(&url).bearer_auth(self.key.expose());
                let answer = self.core.send_json(http, self.core.timeout).await?;
                // A 200 that carries the provider's error and no status is that error (a
                // passing one is retried here like a 5xx), not a task still pending.
                if task_and_word(&answer).1.is_empty()
                    && let Some(error) = self.core.free_envelope_error(&answer)
                {
                    return Err(error);
                }
                Ok(answer)
            })
            .await?;
        status_of(&answer)
    }

    async fn download(&self, output: &VideoOutput) -> Result<GeneratedVideo, AiError> {
        let (bytes, content_type) = match output {
            VideoOutput::Bytes { bytes, mime_type } => (bytes.clone(), Some(mime_type.clone())),
            VideoOutput::Url(url) => {
                self.core
                    .download(url, crate::http::fetch::FileKind::Video)
                    .await?
            }
        };
        let mime_type = sniff_mime(&bytes)
            .filter(|m| m.starts_with("video/"))
            .map(str::to_owned)
            .ok_or_else(|| AiError::InvalidResponse {
                provider: PROVIDER,
                message: format!(
                    "the downloaded file ({} bytes, {}) is not a video",
                    bytes.len(),
                    content_type.as_deref().unwrap_or("no content type")
                ),
            })?;
        Ok(GeneratedVideo { bytes, mime_type })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_every_spelling() {
        assert_eq!(progress_of(Some(&json!("45%"))), Some(45));
        assert_eq!(progress_of(Some(&json!(45))), Some(45));
        assert_eq!(progress_of(Some(&json!(0.5))), Some(50));
        assert_eq!(progress_of(Some(&json!("soon"))), None);
    }

    #[test]
    fn status_words_map_as_documented() {
        let done = status_of(&json!({"status": "success", "data": {"output": "https://x/v.mp4"}}));
        assert_eq!(
            done,
            Ok(VideoStatus::Done {
                output: VideoOutput::Url("https://x/v.mp4".into())
            })
        );
        assert_eq!(
            status_of(&json!({"status": "FAILURE", "fail_reason": "boom"})),
            Ok(VideoStatus::Failed {
                reason: "boom".into()
            })
        );
        assert_eq!(
            status_of(&json!({"status": "IN_PROGRESS", "progress": "10%"})),
            Ok(VideoStatus::Running { progress: Some(10) })
        );
        assert_eq!(
            status_of(&json!({"status": "NOT_START"})),
            Ok(VideoStatus::Pending)
        );
        assert!(status_of(&json!({"status": "DONE"})).is_err());
    }

    #[test]
    fn the_words_of_a_task_that_ended_without_a_video_are_failures() {
        for word in [
            "CANCELLED",
            "canceled",
            "EXPIRED",
            "REJECTED",
            "TIMEOUT",
            "timed_out",
        ] {
            let Ok(VideoStatus::Failed { reason }) =
                status_of(&json!({"task_id": "t1", "status": word}))
            else {
                panic!("{word} is not a failure");
            };
            assert!(reason.contains(&word.to_uppercase()), "{reason}");
        }
        assert_eq!(
            status_of(&json!({"status": "EXPIRED", "fail_reason": "the task expired"})),
            Ok(VideoStatus::Failed {
                reason: "the task expired".into()
            })
        );
    }
}
