//! What the HTTP image APIs share: the request is checked and its prompt framed the same way,
//! sent under the provider's retry policy, and the image counted in the usage. Each API only
//! says how it is asked ([`ImageWire::request`]) and where its answer holds the image
//! ([`ImageWire::read`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{AiError, Provider, shorten};
use crate::http::{Auth, CallKind, HttpCore};
use crate::prompts::{self, PROMPT_VERSION};
use crate::settings::AiSettings;
use crate::traits::ImageModel;
use crate::types::{GeneratedImage, ImageRequest, ReferenceImage, check_image_request};
use crate::usage::{Generated, ModelInfo, Usage};

/// How one HTTP image API is asked and answers.
#[async_trait]
pub(crate) trait ImageWire: Send + Sync {
    /// The URL, the credential and the body that ask `model` for an image of `text` (the
    /// framed prompt) after `references`.
    fn request(
        &self,
        model: &str,
        text: String,
        references: &[ReferenceImage],
    ) -> (String, Auth<'_>, Value);

    /// The image and the usage a JSON answer holds (`core` downloads a linked image).
    ///
    /// # Errors
    /// `Refused` when the provider declined, `NoImage` or `InvalidResponse` when the answer
    /// holds no usable image, and what a download of a linked image fails with.
    async fn read(
        &self,
        core: &HttpCore,
        answer: &Value,
    ) -> Result<(GeneratedImage, Usage), AiError>;
}

/// An [`ImageModel`] over an [`ImageWire`].
pub(crate) struct HttpImage<W> {
    core: HttpCore,
    /// Provider and model that draw.
    model: ModelInfo,
    /// Most reference images one request may carry.
    max_references: usize,
    wire: W,
}

impl<W: ImageWire + 'static> HttpImage<W> {
    /// `model` of `provider` spoken to through `wire`, under `settings`.
    ///
    /// # Errors
    /// [`AiError::Config`] when the HTTP client cannot be built.
    pub(crate) fn model(
        provider: Provider,
        model: &str,
        settings: &AiSettings,
        wire: W,
    ) -> Result<Arc<dyn ImageModel>, AiError> {
        Ok(Arc::new(Self {
            core: HttpCore::new(provider, settings, CallKind::Image)?,
            model: ModelInfo::new(provider, model),
            max_references: settings.max_reference_images,
            wire,
        }))
    }
}

#[async_trait]
impl<W: ImageWire> ImageModel for HttpImage<W> {
    fn model(&self) -> ModelInfo {
        self.model.clone()
    }

    fn max_references(&self) -> usize {
        self.max_references
    }

    #[tracing::instrument(skip_all, fields(provider = %self.model.provider, kind = request.kind.as_str(), references = request.references.len()))]
    async fn generate_image(
        &self,
        request: &ImageRequest,
    ) -> Result<Generated<GeneratedImage>, AiError> {
        check_image_request(request, self.max_references)?;
        let text = prompts::image_prompt(request.kind, &request.prompt, request.references.len());
        let (url, auth, body) = self
            .wire
            .request(&self.model.model, text, &request.references);
        let ((image, mut usage), attempts) = self
            .core
            .post_json(&url, auth, &body, |answer| async move {
                self.wire.read(&self.core, &answer).await
            })
            .await?;
        usage.images = 1;
        usage.requests = attempts;
        Ok(Generated {
            output: image,
            usage,
            model: self.model(),
            prompt_version: PROMPT_VERSION,
        })
    }
}

/// The error of an answer without an image: what the model wrote instead (`text`), or the
/// answer itself when it wrote nothing.
pub(crate) fn no_image(provider: Provider, answer: &Value, text: &str) -> AiError {
    AiError::NoImage {
        provider,
        detail: if text.is_empty() {
            shorten(&answer.to_string(), 200)
        } else {
            shorten(text, 200)
        },
    }
}
