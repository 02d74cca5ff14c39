//! The OpenAI-compatible image proxy ("nano banana").
//!
//! `POST {NANO_BANANA_API_BASE}/v1/chat/completions` with `Authorization: Bearer`. The image
//! comes back inside `choices[0].message.content`: a Markdown image link (downloaded) or a
//! `data:image/…;base64,…` URL.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::looks_like_moderation;
use crate::error::{AiError, Provider, shorten};
use crate::http::image::{HttpImage, ImageWire, no_image};
use crate::http::{Auth, HttpCore, join, required_key};
use crate::settings::{AiSettings, ApiKey};
use crate::traits::ImageModel;
use crate::types::{GeneratedImage, ReferenceImage, sniff_mime};
use crate::usage::Usage;

const PROVIDER: Provider = Provider::NanoBanana;

/// The nano banana proxy as an [`ImageModel`].
///
/// # Errors
/// [`AiError::NotConfigured`] without `NANO_BANANA_API_KEY`; [`AiError::Config`] for bad
/// settings.
pub fn image_model(settings: &AiSettings) -> Result<Arc<dyn ImageModel>, AiError> {
    let key = required_key(
        PROVIDER,
        settings.nano_banana_api_key.as_ref(),
        "NANO_BANANA_API_KEY",
    )?;
    let wire = NanoBanana {
        key,
        base: settings.nano_banana_api_base.clone(),
    };
    HttpImage::model(PROVIDER, &settings.nano_banana_model, settings, wire)
}

struct NanoBanana {
    key: ApiKey,
    base: String,
}

/// Where the answer says the image is.
enum Found {
    Link(String),
    Inline(Vec<u8>),
}

fn find_image(content: &str) -> Result<Option<Found>, AiError> {
    // A Markdown image: ![alt](http…)
    let mut rest = content;
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        if let Some(end) = after.find(')') {
            let target = after[..end].trim();
            if target.starts_with("http://") || target.starts_with("https://") {
                return Ok(Some(Found::Link(target.to_owned())));
            }
        }
        rest = after;
    }
    if let Some(start) = content.find("data:image/") {
        let url = &content[start..];
        let Some(comma) = url.find(";base64,") else {
            return Ok(None);
        };
        let data: String = url[comma + 8..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .map_err(|e| AiError::InvalidResponse {
                provider: PROVIDER,
                message: format!("the data URL is not base64: {e}"),
            })?;
        return Ok(Some(Found::Inline(bytes)));
    }
    Ok(None)
}

fn message_text(answer: &Value) -> String {
    match answer.pointer("/choices/0/message/content") {
        Some(Value::String(s)) => s.clone(),
        // Some proxies answer with content parts.
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| {
                        p.pointer("/image_url/url")
                            .and_then(Value::as_str)
                            .map(|u| format!("![image]({u}) {u}"))
                    })
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[async_trait]
impl ImageWire for NanoBanana {
    fn request(
        &self,
        model: &str,
        text: String,
        references: &[ReferenceImage],
    ) -> (String, Auth<'_>, Value) {
        let mut content = vec![json!({"type": "text", "text": text})];
        content.extend(
            references
                .iter()
                .map(|r| json!({"type": "image_url", "image_url": {"url": r.data_url()}})),
        );
        let body = json!({
            "model": model,
            "stream": false,
            "messages": [{"role": "user", "content": content}]
        });
        let url = join(&self.base, "/v1/chat/completions");
        (url, Auth::Bearer(&self.key), body)
    }

    async fn read(
        &self,
        core: &HttpCore,
        answer: &Value,
    ) -> Result<(GeneratedImage, Usage), AiError> {
        let image = image_from(core, answer).await?;
        let n = |p: &str| answer.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        Ok((
            image,
            Usage {
                input_tokens: n("/usage/prompt_tokens"),
                output_tokens: n("/usage/completion_tokens"),
                ..Usage::default()
            },
        ))
    }
}

/// The image of an answer: inline, or downloaded by `core` from the link it holds.
async fn image_from(core: &HttpCore, answer: &Value) -> Result<GeneratedImage, AiError> {
    let choice = answer.pointer("/choices/0");
    if let Some(refusal) = choice
        .and_then(|c| c.pointer("/message/refusal"))
        .and_then(Value::as_str)
    {
        return Err(AiError::Refused {
            provider: PROVIDER,
            reason: refusal.to_owned(),
        });
    }
    if choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        == Some("content_filter")
    {
        return Err(AiError::Refused {
            provider: PROVIDER,
            reason: "the answer was stopped by the content filter".to_owned(),
        });
    }
    let content = message_text(answer);
    let bytes = match find_image(&content)? {
        Some(Found::Link(link)) => {
            core.download(&link, crate::http::fetch::FileKind::Image)
                .await?
                .0
        }
        Some(Found::Inline(bytes)) => Bytes::from(bytes),
        None if looks_like_moderation(&content) => {
            return Err(AiError::Refused {
                provider: PROVIDER,
                reason: shorten(&content, 300),
            });
        }
        None => {
            return Err(no_image(PROVIDER, answer, &content));
        }
    };
    let mime_type = sniff_mime(&bytes)
        .filter(|m| m.starts_with("image/"))
        .ok_or_else(|| AiError::InvalidResponse {
            provider: PROVIDER,
            message: format!("the returned file ({} bytes) is not an image", bytes.len()),
        })?;
    Ok(GeneratedImage {
        bytes,
        mime_type: mime_type.to_owned(),
    })
}
