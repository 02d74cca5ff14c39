//! OpenAI chat completions with a strict `json_schema` response format.
//!
//! `POST {OPENAI_API_BASE}/chat/completions` with `Authorization: Bearer`; the base includes
//! `/v1`, as for the OpenAI SDK.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::error::{AiError, Provider, shorten};
use crate::http::{Auth, CallKind, HttpCore, join, required_key};
use crate::llm::{Finish, LlmScript, Role, TextAnswer, TextBackend, TextCall};
use crate::settings::{AiSettings, ApiKey};
use crate::traits::ScriptModel;
use crate::usage::{ModelInfo, Usage};

const PROVIDER: Provider = Provider::OpenAi;

/// OpenAI as a [`ScriptModel`] sending `model`.
///
/// # Errors
/// [`AiError::NotConfigured`] without `OPENAI_API_KEY`; [`AiError::Config`] for bad settings.
pub fn script_model(settings: &AiSettings, model: &str) -> Result<Arc<dyn ScriptModel>, AiError> {
    let key = required_key(PROVIDER, settings.openai_api_key.as_ref(), "OPENAI_API_KEY")?;
    let core = HttpCore::new(PROVIDER, settings, CallKind::Text)?;
    Ok(Arc::new(LlmScript {
        backend: OpenAiText {
            core,
            key,
            base: settings.openai_api_base.clone(),
            model: model.to_owned(),
            max_output_tokens: settings.max_output_tokens,
        },
    }))
}

struct OpenAiText {
    core: HttpCore,
    key: ApiKey,
    base: String,
    model: String,
    max_output_tokens: u32,
}

impl OpenAiText {
    fn body(&self, call: &TextCall) -> Value {
        let mut messages = vec![json!({"role": "system", "content": call.system})];
        for (i, turn) in call.turns.iter().enumerate() {
            let role = if turn.role == Role::User {
                "user"
            } else {
                "assistant"
            };
            let content = if i == 0 && !call.images.is_empty() {
                let mut parts = vec![json!({"type": "text", "text": turn.text})];
                parts.extend(call.images.iter().map(
                    |image| json!({"type": "image_url", "image_url": {"url": image.data_url()}}),
                ));
                Value::Array(parts)
            } else {
                Value::String(turn.text.clone())
            };
            messages.push(json!({"role": role, "content": content}));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "max_completion_tokens": self.max_output_tokens
        });
        if let Some((name, schema)) = &call.schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": name, "strict": true, "schema": schema}
            });
        }
        body
    }
}

#[async_trait]
impl TextBackend for OpenAiText {
    fn model(&self) -> ModelInfo {
        ModelInfo::new(PROVIDER, &self.model)
    }

    async fn complete(&self, call: &TextCall) -> Result<TextAnswer, AiError> {
        let url = join(&self.base, "/chat/completions");
        let body = self.body(call);
        let (answer, attempts) = self
            .core
            .post_for_json(&url, Auth::Bearer(&self.key), &body)
            .await?;
        let choice = answer
            .pointer("/choices/0")
            .ok_or_else(|| AiError::InvalidResponse {
                provider: PROVIDER,
                message: format!("no choices in {}", shorten(&answer.to_string(), 200)),
            })?;
        if let Some(refusal) = choice.pointer("/message/refusal").and_then(Value::as_str) {
            return Err(AiError::Refused {
                provider: PROVIDER,
                reason: refusal.to_owned(),
            });
        }
        let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
        if finish_reason == Some("content_filter") {
            return Err(AiError::Refused {
                provider: PROVIDER,
                reason: "the answer was stopped by the content filter".to_owned(),
            });
        }
        let text = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let finish = if finish_reason == Some("length") {
            Finish::Truncated("length".to_owned())
        } else {
            Finish::Complete
        };
        let n = |p: &str| answer.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        Ok(TextAnswer {
            text,
            finish,
            usage: Usage {
                input_tokens: n("/usage/prompt_tokens"),
                output_tokens: n("/usage/completion_tokens"),
                requests: attempts,
                ..Usage::default()
            },
        })
    }
}
