//! Building the providers from settings, and choosing a script model by name.

use std::sync::Arc;

use crate::catalog::ModelCatalog;
use crate::error::{AiError, Provider};
use crate::offline::{OfflineLatency, OfflineProvider};
use crate::settings::{AiSettings, ImageProviderChoice};
use crate::traits::{ImageModel, ScriptModel, VideoModel, VoiceModel};
use crate::usage::CostTable;

/// The model a request gets when it names none.
pub const DEFAULT_SCRIPT_MODEL: &str = "gemini-3-pro-preview";
/// The name that selects OpenAI with `GPT_MODEL`.
pub const DEFAULT_GPT_MODEL: &str = "gpt-5.1";

/// Where a model name routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptModelChoice {
    /// Gemini, sending this model name.
    Gemini(String),
    /// OpenAI, sending this model name.
    OpenAi(String),
    /// The offline provider.
    Offline,
}

/// Routes a requested model name through the catalogue `settings` describe (see
/// [`ModelCatalog::from_settings`]).
///
/// # Errors
/// [`AiError::UnknownModel`] for a name the catalogue does not list; [`AiError::Config`] when
/// `SCRIPT_MODELS` does not parse.
pub fn choose_script_model(
    name: Option<&str>,
    settings: &AiSettings,
) -> Result<ScriptModelChoice, AiError> {
    let catalog = ModelCatalog::from_settings(settings)?;
    Ok(catalog.resolve(name)?.route.clone())
}

/// Every provider the pipeline uses, built once from settings.
///
/// With no script key configured (or `AI_OFFLINE=true`), every valid model name is served by
/// the offline provider, so a fresh machine runs end to end. Once a key is configured, a name
/// that routes to a provider without a key is [`AiError::NotConfigured`].
#[derive(Clone)]
pub struct AiProviders {
    settings: AiSettings,
    catalog: ModelCatalog,
    offline: Arc<OfflineProvider>,
    image: Arc<dyn ImageModel>,
    video: Arc<dyn VideoModel>,
    voice: Arc<dyn VoiceModel>,
}

impl std::fmt::Debug for AiProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiProviders")
            .field("offline_scripts", &self.offline_scripts())
            .field("image", &self.image.model())
            .field("video", &self.video.model())
            .field("voice", &self.voice.model())
            .finish()
    }
}

impl AiProviders {
    /// Builds every provider.
    ///
    /// # Errors
    /// [`AiError::Config`] for invalid settings; [`AiError::NotConfigured`] when
    /// `IMAGE_PROVIDER` names a provider without a key.
    pub fn from_settings(settings: &AiSettings) -> Result<Self, AiError> {
        settings.check()?;
        let offline = Arc::new(OfflineProvider::new(settings.offline_seed).with_latency(
            OfflineLatency {
                image: std::time::Duration::from_millis(settings.offline_image_delay_ms),
                video: std::time::Duration::from_millis(settings.offline_video_delay_ms),
            },
        ));
        let image: Arc<dyn ImageModel> = match (settings.ai_offline, settings.image_provider) {
            (true, _) | (false, ImageProviderChoice::Offline) => offline.clone(),
            (false, ImageProviderChoice::NanoBanana) => {
                crate::http::nano_banana::image_model(settings)?
            }
            (false, ImageProviderChoice::Gemini) => crate::http::gemini::image_model(settings)?,
            (false, ImageProviderChoice::Auto) => {
                if settings.nano_banana_api_key.is_some() {
                    crate::http::nano_banana::image_model(settings)?
                } else if settings.gemini_api_key.is_some() {
                    crate::http::gemini::image_model(settings)?
                } else {
                    offline.clone()
                }
            }
        };
        let video: Arc<dyn VideoModel> = if !settings.ai_offline && settings.sora_api_key.is_some()
        {
            crate::http::sora::video_model(settings)?
        } else {
            offline.clone()
        };
        let providers = Self {
            catalog: ModelCatalog::from_settings(settings)?,
            settings: settings.clone(),
            voice: offline.clone(),
            offline,
            image,
            video,
        };
        tracing::info!(?providers, "AI providers ready");
        if providers.offline_scripts() {
            tracing::warn!(
                "no GEMINI_API_KEY or OPENAI_API_KEY: scripts are written by the offline provider"
            );
        }
        Ok(providers)
    }

    /// Everything offline, with this seed.
    pub fn offline(seed: u64) -> Self {
        let offline = Arc::new(OfflineProvider::new(seed));
        let settings = AiSettings {
            ai_offline: true,
            offline_seed: seed,
            ..AiSettings::default()
        };
        Self {
            // The built-in list always parses.
            catalog: ModelCatalog::from_settings(&settings)
                .unwrap_or_else(|_| ModelCatalog::empty()),
            settings,
            image: offline.clone(),
            video: offline.clone(),
            voice: offline.clone(),
            offline,
        }
    }

    /// The same providers with another image model (a wrapper that adds latency, counts
    /// calls or fails on purpose, in tests and benchmarks).
    #[must_use]
    pub fn with_image_model(mut self, model: Arc<dyn ImageModel>) -> Self {
        self.image = model;
        self
    }

    /// The same providers with another video model.
    #[must_use]
    pub fn with_video_model(mut self, model: Arc<dyn VideoModel>) -> Self {
        self.video = model;
        self
    }

    /// Whether scripts are served offline whatever model is asked for.
    pub fn offline_scripts(&self) -> bool {
        !self.settings.has_script_provider()
    }

    /// The script model for a requested name (`None` = [`DEFAULT_SCRIPT_MODEL`]).
    ///
    /// # Errors
    /// [`AiError::UnknownModel`] for a name that routes nowhere; [`AiError::NotConfigured`]
    /// when it routes to a provider without a key (and some other script key is configured).
    pub fn script_model(&self, name: Option<&str>) -> Result<Arc<dyn ScriptModel>, AiError> {
        let choice = self.catalog.resolve(name)?.route.clone();
        if self.offline_scripts() {
            return Ok(self.offline.clone());
        }
        match choice {
            ScriptModelChoice::Offline => Ok(self.offline.clone()),
            ScriptModelChoice::Gemini(model) => {
                crate::http::gemini::script_model(&self.settings, &model)
            }
            ScriptModelChoice::OpenAi(model) => {
                crate::http::openai::script_model(&self.settings, &model)
            }
        }
    }

    /// The script models requests may name, with their prices.
    pub fn catalog(&self) -> &ModelCatalog {
        &self.catalog
    }

    /// What calls cost when a run writes with the script model `name` (`None`: the
    /// default): the `PRICE_*` table with that model's script prices. A name the catalogue
    /// does not list gets the plain table (the request is refused before anything is priced).
    pub fn cost_table(&self, name: Option<&str>) -> CostTable {
        let mut table = self.settings.cost_table();
        if let Ok(spec) = self.catalog.resolve(name) {
            table.generate_drama = spec.prices.generate_drama;
            table.improve_drama = spec.prices.improve_drama;
            table.critique_drama = spec.prices.critique_drama;
            table.write_episode_scenes = spec.prices.write_episode_scenes;
        }
        table
    }

    /// Whether this deployment bills (`PRICING`, on unless turned off).
    pub fn billed(&self) -> bool {
        self.settings.pricing
    }

    /// The image model.
    pub fn image_model(&self) -> Arc<dyn ImageModel> {
        self.image.clone()
    }

    /// The video model.
    pub fn video_model(&self) -> Arc<dyn VideoModel> {
        self.video.clone()
    }

    /// The voice model (offline speech; no HTTP voice provider exists yet).
    pub fn voice_model(&self) -> Arc<dyn VoiceModel> {
        self.voice.clone()
    }

    /// The offline provider itself (for tests and previews).
    pub fn offline_provider(&self) -> Arc<OfflineProvider> {
        self.offline.clone()
    }

    /// Which provider serves images.
    pub fn image_provider(&self) -> Provider {
        self.image.model().provider
    }

    /// The settings the providers were built from.
    pub fn settings(&self) -> &AiSettings {
        &self.settings
    }
}
