//! The provider clients' constructors in a build without them (cargo feature `providers` off):
//! settings that select a provider are refused with the reason, so a trimmed build never
//! answers with offline output where a real model was configured.

use std::sync::Arc;

use crate::error::{AiError, Provider};
use crate::settings::AiSettings;
use crate::traits::{ImageModel, ScriptModel, VideoModel};

fn absent(provider: Provider) -> AiError {
    AiError::Config(format!(
        "{provider} is configured, but this build has no provider clients (cargo feature \
         `providers` of drama-ai); remove its key or set AI_OFFLINE=true"
    ))
}

pub(crate) mod gemini {
    use super::*;

    pub(crate) fn script_model(_: &AiSettings, _: &str) -> Result<Arc<dyn ScriptModel>, AiError> {
        Err(absent(Provider::Gemini))
    }

    pub(crate) fn image_model(_: &AiSettings) -> Result<Arc<dyn ImageModel>, AiError> {
        Err(absent(Provider::Gemini))
    }
}

pub(crate) mod openai {
    use super::*;

    pub(crate) fn script_model(_: &AiSettings, _: &str) -> Result<Arc<dyn ScriptModel>, AiError> {
        Err(absent(Provider::OpenAi))
    }
}

pub(crate) mod nano_banana {
    use super::*;

    pub(crate) fn image_model(_: &AiSettings) -> Result<Arc<dyn ImageModel>, AiError> {
        Err(absent(Provider::NanoBanana))
    }
}

pub(crate) mod sora {
    use super::*;

    pub(crate) fn video_model(_: &AiSettings) -> Result<Arc<dyn VideoModel>, AiError> {
        Err(absent(Provider::Sora))
    }
}
