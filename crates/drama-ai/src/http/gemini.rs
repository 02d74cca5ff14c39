//! Gemini `generateContent`: structured text and native image generation.
//!
//! `POST {GEMINI_API_BASE}/v1beta/models/{model}:generateContent` with `x-goog-api-key`.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::{AiError, Provider, shorten};
use crate::http::image::{HttpImage, ImageWire, no_image};
use crate::http::{Auth, CallKind, HttpCore, join, required_key};
use crate::llm::{Finish, LlmScript, Role, TextAnswer, TextBackend, TextCall};
use crate::settings::{AiSettings, ApiKey};
use crate::traits::{ImageModel, ScriptModel};
use crate::types::{GeneratedImage, ReferenceImage, sniff_mime};
use crate::usage::{ModelInfo, Usage};

const PROVIDER: Provider = Provider::Gemini;

fn key(settings: &AiSettings) -> Result<ApiKey, AiError> {
    required_key(PROVIDER, settings.gemini_api_key.as_ref(), "GEMINI_API_KEY")
}

/// Gemini as a [`ScriptModel`] sending `model`.
///
/// # Errors
/// [`AiError::NotConfigured`] without `GEMINI_API_KEY`; [`AiError::Config`] for bad settings.
pub fn script_model(settings: &AiSettings, model: &str) -> Result<Arc<dyn ScriptModel>, AiError> {
    let core = HttpCore::new(PROVIDER, settings, CallKind::Text)?;
    Ok(Arc::new(LlmScript {
        backend: GeminiText {
            core,
            key: key(settings)?,
            base: settings.gemini_api_base.clone(),
            model: model.to_owned(),
            max_output_tokens: settings.max_output_tokens,
        },
    }))
}

/// Gemini image generation as an [`ImageModel`].
///
/// # Errors
/// As [`script_model`].
pub fn image_model(settings: &AiSettings) -> Result<Arc<dyn ImageModel>, AiError> {
    let wire = GeminiImage {
        key: key(settings)?,
        base: settings.gemini_api_base.clone(),
        aspect_ratio: settings.default_aspect_ratio.clone(),
    };
    HttpImage::model(PROVIDER, &settings.gemini_image_model, settings, wire)
}

fn endpoint(base: &str, model: &str) -> String {
    join(base, &format!("/v1beta/models/{model}:generateContent"))
}

fn inline(image: &ReferenceImage) -> Value {
    json!({"inlineData": {
        "mimeType": image.mime_type,
        "data": base64::engine::general_purpose::STANDARD.encode(&image.bytes)
    }})
}

fn usage_of(body: &Value) -> Usage {
    let n = |p: &str| body.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("/usageMetadata/promptTokenCount"),
        output_tokens: n("/usageMetadata/candidatesTokenCount")
            + n("/usageMetadata/thoughtsTokenCount"),
        requests: 1,
        ..Usage::default()
    }
}

/// Refusals Gemini reports in a 200 answer.
fn refusal(body: &Value) -> Option<String> {
    if let Some(reason) = body
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)
    {
        let message = body
            .pointer("/promptFeedback/blockReasonMessage")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Some(
            format!("prompt blocked: {reason} {message}")
                .trim()
                .to_owned(),
        );
    }
    let finish = body
        .pointer("/candidates/0/finishReason")
        .and_then(Value::as_str)?;
    matches!(
        finish,
        "SAFETY"
            | "PROHIBITED_CONTENT"
            | "BLOCKLIST"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "RECITATION"
    )
    .then(|| {
        let message = body
            .pointer("/candidates/0/finishMessage")
            .and_then(Value::as_str)
            .unwrap_or("");
        format!("answer blocked: {finish} {message}")
            .trim()
            .to_owned()
    })
}

struct GeminiText {
    core: HttpCore,
    key: ApiKey,
    base: String,
    model: String,
    max_output_tokens: u32,
}

impl GeminiText {
    fn body(&self, call: &TextCall) -> Value {
        let contents: Vec<Value> = call
            .turns
            .iter()
            .enumerate()
            .map(|(i, turn)| {
                let mut parts = vec![json!({"text": turn.text})];
                if i == 0 {
                    parts.extend(call.images.iter().map(inline));
                }
                json!({
                    "role": if turn.role == Role::User { "user" } else { "model" },
                    "parts": parts
                })
            })
            .collect();
        let mut config = json!({"maxOutputTokens": self.max_output_tokens});
        if let Some((_, schema)) = &call.schema {
            config["responseMimeType"] = json!("application/json");
            config["responseJsonSchema"] = schema.clone();
        }
        if self.model.starts_with("gemini-3") {
            config["thinkingConfig"] = json!({"thinkingLevel": "low"});
        }
        json!({
            "systemInstruction": {"parts": [{"text": call.system}]},
            "contents": contents,
            "generationConfig": config
        })
    }
}

#[async_trait]
impl TextBackend for GeminiText {
    fn model(&self) -> ModelInfo {
        ModelInfo::new(PROVIDER, &self.model)
    }

    async fn complete(&self, call: &TextCall) -> Result<TextAnswer, AiError> {
        let url = endpoint(&self.base, &self.model);
        let body = self.body(call);
        let (answer, attempts) = self
            .core
            .post_for_json(&url, Auth::GoogleKey(&self.key), &body)
            .await?;
        if let Some(reason) = refusal(&answer) {
            return Err(AiError::Refused {
                provider: PROVIDER,
                reason,
            });
        }
        let candidate =
            answer
                .pointer("/candidates/0")
                .ok_or_else(|| AiError::InvalidResponse {
                    provider: PROVIDER,
                    message: format!("no candidates in {}", shorten(&answer.to_string(), 200)),
                })?;
        // Thinking models add thought parts; only the visible text is the answer.
        let text: String = candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter(|p| !p.get("thought").and_then(Value::as_bool).unwrap_or(false))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let finish = match candidate.get("finishReason").and_then(Value::as_str) {
            Some("MAX_TOKENS") => Finish::Truncated("MAX_TOKENS".to_owned()),
            _ => Finish::Complete,
        };
        let mut usage = usage_of(&answer);
        usage.requests = attempts;
        Ok(TextAnswer {
            text,
            finish,
            usage,
        })
    }
}

struct GeminiImage {
    key: ApiKey,
    base: String,
    aspect_ratio: String,
}

#[async_trait]
impl ImageWire for GeminiImage {
    fn request(
        &self,
        model: &str,
        text: String,
        references: &[ReferenceImage],
    ) -> (String, Auth<'_>, Value) {
        let mut parts = vec![json!({"text": text})];
        parts.extend(references.iter().map(inline));
        let body = json!({
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                "responseModalities": ["TEXT", "IMAGE"],
                "imageConfig": {"aspectRatio": self.aspect_ratio}
            }
        });
        let url = endpoint(&self.base, model);
        (url, Auth::GoogleKey(&self.key), body)
    }

    async fn read(
        &self,
        _core: &HttpCore,
        answer: &Value,
    ) -> Result<(GeneratedImage, Usage), AiError> {
        extract_inline_image(answer).map(|image| (image, usage_of(answer)))
    }
}

fn extract_inline_image(answer: &Value) -> Result<GeneratedImage, AiError> {
    if let Some(reason) = refusal(answer) {
        return Err(AiError::Refused {
            provider: PROVIDER,
            reason,
        });
    }
    let parts = answer
        .pointer("/candidates/0/content/parts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(data) = parts.iter().find_map(|p| p.get("inlineData")) else {
        let text: String = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return Err(no_image(PROVIDER, answer, &text));
    };
    let encoded = data.get("data").and_then(Value::as_str).unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| AiError::InvalidResponse {
            provider: PROVIDER,
            message: format!("inlineData is not base64: {e}"),
        })?;
    let mime_type = sniff_mime(&bytes)
        .filter(|m| m.starts_with("image/"))
        .ok_or_else(|| AiError::InvalidResponse {
            provider: PROVIDER,
            message: format!(
                "inlineData ({}, {} bytes) is not an image",
                data.get("mimeType").and_then(Value::as_str).unwrap_or("?"),
                bytes.len()
            ),
        })?;
    Ok(GeneratedImage {
        bytes: Bytes::from(bytes),
        mime_type: mime_type.to_owned(),
    })
}
