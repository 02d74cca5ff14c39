//! Configuration of the providers, with the peer's environment variable names.

use std::fmt;
use std::time::Duration;

use drama_domain::Backoff;
use serde::Deserialize;

use crate::error::AiError;
use crate::retry::RetryPolicy;
use crate::traits::VideoPolling;
use crate::usage::CostTable;

/// A secret (API key). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Which image backend draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageProviderChoice {
    /// Nano banana if `NANO_BANANA_API_KEY` is set, else Gemini if `GEMINI_API_KEY` is set,
    /// else offline.
    Auto,
    /// The OpenAI-compatible proxy ("nano banana").
    NanoBanana,
    /// Gemini image generation.
    Gemini,
    /// The offline provider.
    Offline,
}

/// Every setting of the AI providers. Field names are the lower-cased environment variables
/// (`GEMINI_API_KEY` → `gemini_api_key`); [`AiSettings::from_env`] reads those variables.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct AiSettings {
    /// `AI_OFFLINE`: use the offline provider for everything, whatever keys are set.
    pub ai_offline: bool,
    /// `GEMINI_API_KEY`.
    pub gemini_api_key: Option<ApiKey>,
    /// `GEMINI_API_BASE`: default `https://generativelanguage.googleapis.com`.
    pub gemini_api_base: String,
    /// `GEMINI_DRAMA_MODEL`: the model behind the name `gemini-3-pro-preview`.
    pub gemini_drama_model: String,
    /// `GEMINI_IMAGE_MODEL`: default `gemini-2.5-flash-image`.
    pub gemini_image_model: String,
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<ApiKey>,
    /// `OPENAI_API_BASE`, including `/v1` as for the OpenAI SDK: default `https://api.openai.com/v1`.
    pub openai_api_base: String,
    /// `GPT_MODEL`: the model behind the name `gpt-5.1`.
    pub gpt_model: String,
    /// `NANO_BANANA_API_KEY`.
    pub nano_banana_api_key: Option<ApiKey>,
    /// `NANO_BANANA_API_BASE`, without `/v1`: default `https://ai.t8star.cn`.
    pub nano_banana_api_base: String,
    /// `NANO_BANANA_MODEL`: default `gemini-2.5-flash-image`.
    pub nano_banana_model: String,
    /// `IMAGE_PROVIDER`: `auto` (default), `nano-banana`, `gemini` or `offline`.
    pub image_provider: ImageProviderChoice,
    /// `SORA_API_KEY`.
    pub sora_api_key: Option<ApiKey>,
    /// `SORA_API_BASE`: default `https://ai.t8star.cn`.
    pub sora_api_base: String,
    /// `SORA_MODEL`: default `sora-2`.
    pub sora_model: String,
    /// `SORA_HD`: default false.
    pub sora_hd: bool,
    /// `DEFAULT_ASPECT_RATIO`: default `9:16`, sent to the video and Gemini image APIs.
    pub default_aspect_ratio: String,
    /// `MAX_RETRIES`: extra attempts after a transient failure, default 2.
    pub max_retries: u32,
    /// `RETRY_BASE_DELAY_MS`: first backoff, doubling, default 500.
    pub retry_base_delay_ms: u64,
    /// `RETRY_MAX_DELAY_MS`: longest backoff, default 20000.
    pub retry_max_delay_ms: u64,
    /// `MAX_RETRY_AFTER_SECS`: longest `Retry-After` honoured inside a call, default 60.
    pub max_retry_after_secs: u64,
    /// `CONNECT_TIMEOUT_SECS`: default 10.
    pub connect_timeout_secs: u64,
    /// `TEXT_TIMEOUT_SECS`: one text-model request, default 180.
    pub text_timeout_secs: u64,
    /// `IMAGE_TIMEOUT_SECS`: one image request, default 120.
    pub image_timeout_secs: u64,
    /// `VIDEO_REQUEST_TIMEOUT_SECS`: one submit or poll request, default 30.
    pub video_request_timeout_secs: u64,
    /// `DOWNLOAD_TIMEOUT_SECS`: fetching a result file, default 60.
    pub download_timeout_secs: u64,
    /// `DOWNLOAD_ALLOW_LOCAL`: also fetch result files over plain `http` from loopback
    /// addresses (tests and local mock providers), default false.
    pub download_allow_local: bool,
    /// `MAX_IMAGE_BYTES`: largest image file fetched from a provider, default 32 MiB.
    pub max_image_bytes: u64,
    /// `MAX_VIDEO_BYTES`: largest video file fetched from a provider, default 256 MiB.
    pub max_video_bytes: u64,
    /// `VIDEO_POLL_INTERVAL_MS`: pause between polls, default 5000.
    pub video_poll_interval_ms: u64,
    /// `VIDEO_DEADLINE_SECS`: give up waiting for a task, default 600.
    pub video_deadline_secs: u64,
    /// `MAX_OUTPUT_TOKENS`: output limit of a script call, default 32000.
    pub max_output_tokens: u32,
    /// `MAX_REFERENCE_IMAGES`: most references per image request, default 4.
    pub max_reference_images: usize,
    /// `OFFLINE_SEED`: varies the offline provider's output, default 0.
    pub offline_seed: u64,
    /// `OFFLINE_IMAGE_DELAY_MS`: how long an offline image takes, default 0.
    pub offline_image_delay_ms: u64,
    /// `OFFLINE_VIDEO_DELAY_MS`: how long an offline clip takes to finish, default 0.
    pub offline_video_delay_ms: u64,
    /// `SCRIPT_MODELS`: the script models requests may name, as
    /// `name=provider[:upstream][@generate/improve/critique/episode],…` (see
    /// [`crate::ModelCatalog`]); empty: the built-in list.
    pub script_models: String,
    /// `PRICE_GENERATE_DRAMA`: credits for writing a drama from a premise, default 10. Script prices are the defaults of `SCRIPT_MODELS` entries.
    pub price_generate_drama: u32,
    /// `PRICE_IMPROVE_DRAMA`: credits for rewriting a drama from feedback, default 10. Script prices are the defaults of `SCRIPT_MODELS` entries.
    pub price_improve_drama: u32,
    /// `PRICE_CRITIQUE_DRAMA`: credits for a critique, default 3. Script prices are the defaults of `SCRIPT_MODELS` entries.
    pub price_critique_drama: u32,
    /// `PRICE_EPISODE_SCENES`: credits for writing one episode's scenes, default 8. Script prices are the defaults of `SCRIPT_MODELS` entries.
    pub price_episode_scenes: u32,
    /// `PRICE_IMAGE`: credits per image, default 4.
    pub price_image: u32,
    /// `PRICE_VIDEO_PER_SECOND`: credits per second of video, default 10.
    pub price_video_per_second: u32,
    /// `PRICE_VOICE_PER_10_SECONDS`: credits per started 10 seconds of speech, default 1.
    pub price_voice_per_10_seconds: u32,
    /// `PRICING`: `off` for deployments that do not bill: every price is 0 (the ledger still
    /// records each run at price 0), default on.
    pub pricing: bool,
}

impl Default for AiSettings {
    fn default() -> Self {
        Self {
            ai_offline: false,
            gemini_api_key: None,
            gemini_api_base: "https://generativelanguage.googleapis.com".to_owned(),
            gemini_drama_model: "gemini-3-pro-preview".to_owned(),
            gemini_image_model: "gemini-2.5-flash-image".to_owned(),
            openai_api_key: None,
            openai_api_base: "https://api.openai.com/v1".to_owned(),
            gpt_model: "gpt-5.1".to_owned(),
            nano_banana_api_key: None,
            nano_banana_api_base: "https://ai.t8star.cn".to_owned(),
            nano_banana_model: "gemini-2.5-flash-image".to_owned(),
            image_provider: ImageProviderChoice::Auto,
            sora_api_key: None,
            sora_api_base: "https://ai.t8star.cn".to_owned(),
            sora_model: "sora-2".to_owned(),
            sora_hd: false,
            default_aspect_ratio: "9:16".to_owned(),
            max_retries: 2,
            retry_base_delay_ms: 500,
            retry_max_delay_ms: 20_000,
            max_retry_after_secs: 60,
            connect_timeout_secs: 10,
            text_timeout_secs: 180,
            image_timeout_secs: 120,
            video_request_timeout_secs: 30,
            download_timeout_secs: 60,
            download_allow_local: false,
            max_image_bytes: 32 * 1024 * 1024,
            max_video_bytes: 256 * 1024 * 1024,
            video_poll_interval_ms: 5_000,
            video_deadline_secs: 600,
            max_output_tokens: 32_000,
            max_reference_images: 4,
            offline_seed: 0,
            offline_image_delay_ms: 0,
            offline_video_delay_ms: 0,
            script_models: String::new(),
            price_generate_drama: 10,
            price_improve_drama: 10,
            price_critique_drama: 3,
            price_episode_scenes: 8,
            price_image: 4,
            price_video_per_second: 10,
            price_voice_per_10_seconds: 1,
            pricing: true,
        }
    }
}

impl fmt::Debug for AiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys show only whether they are set.
        let set = |k: &Option<ApiKey>| if k.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("AiSettings")
            .field("ai_offline", &self.ai_offline)
            .field("gemini_api_key", &set(&self.gemini_api_key))
            .field("gemini_api_base", &self.gemini_api_base)
            .field("gemini_drama_model", &self.gemini_drama_model)
            .field("gemini_image_model", &self.gemini_image_model)
            .field("openai_api_key", &set(&self.openai_api_key))
            .field("openai_api_base", &self.openai_api_base)
            .field("gpt_model", &self.gpt_model)
            .field("nano_banana_api_key", &set(&self.nano_banana_api_key))
            .field("nano_banana_api_base", &self.nano_banana_api_base)
            .field("nano_banana_model", &self.nano_banana_model)
            .field("image_provider", &self.image_provider)
            .field("sora_api_key", &set(&self.sora_api_key))
            .field("sora_api_base", &self.sora_api_base)
            .field("sora_model", &self.sora_model)
            .field("sora_hd", &self.sora_hd)
            .field("default_aspect_ratio", &self.default_aspect_ratio)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay_ms", &self.retry_base_delay_ms)
            .field("retry_max_delay_ms", &self.retry_max_delay_ms)
            .field("max_retry_after_secs", &self.max_retry_after_secs)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("text_timeout_secs", &self.text_timeout_secs)
            .field("image_timeout_secs", &self.image_timeout_secs)
            .field(
                "video_request_timeout_secs",
                &self.video_request_timeout_secs,
            )
            .field("download_timeout_secs", &self.download_timeout_secs)
            .field("download_allow_local", &self.download_allow_local)
            .field("pricing", &self.pricing)
            .field("max_image_bytes", &self.max_image_bytes)
            .field("max_video_bytes", &self.max_video_bytes)
            .field("video_poll_interval_ms", &self.video_poll_interval_ms)
            .field("video_deadline_secs", &self.video_deadline_secs)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("max_reference_images", &self.max_reference_images)
            .field("offline_seed", &self.offline_seed)
            .field("offline_image_delay_ms", &self.offline_image_delay_ms)
            .field("offline_video_delay_ms", &self.offline_video_delay_ms)
            .field("script_models", &self.script_models)
            .field("price_generate_drama", &self.price_generate_drama)
            .field("price_improve_drama", &self.price_improve_drama)
            .field("price_critique_drama", &self.price_critique_drama)
            .field("price_episode_scenes", &self.price_episode_scenes)
            .field("price_image", &self.price_image)
            .field("price_video_per_second", &self.price_video_per_second)
            .field(
                "price_voice_per_10_seconds",
                &self.price_voice_per_10_seconds,
            )
            .finish()
    }
}

/// The environment variables [`AiSettings::from_env`] reads, in field order.
pub const ENV_VARS: [&str; 45] = [
    "AI_OFFLINE",
    "GEMINI_API_KEY",
    "GEMINI_API_BASE",
    "GEMINI_DRAMA_MODEL",
    "GEMINI_IMAGE_MODEL",
    "OPENAI_API_KEY",
    "OPENAI_API_BASE",
    "GPT_MODEL",
    "NANO_BANANA_API_KEY",
    "NANO_BANANA_API_BASE",
    "NANO_BANANA_MODEL",
    "IMAGE_PROVIDER",
    "SORA_API_KEY",
    "SORA_API_BASE",
    "SORA_MODEL",
    "SORA_HD",
    "DEFAULT_ASPECT_RATIO",
    "MAX_RETRIES",
    "RETRY_BASE_DELAY_MS",
    "RETRY_MAX_DELAY_MS",
    "MAX_RETRY_AFTER_SECS",
    "CONNECT_TIMEOUT_SECS",
    "TEXT_TIMEOUT_SECS",
    "IMAGE_TIMEOUT_SECS",
    "VIDEO_REQUEST_TIMEOUT_SECS",
    "DOWNLOAD_TIMEOUT_SECS",
    "DOWNLOAD_ALLOW_LOCAL",
    "MAX_IMAGE_BYTES",
    "MAX_VIDEO_BYTES",
    "VIDEO_POLL_INTERVAL_MS",
    "VIDEO_DEADLINE_SECS",
    "MAX_OUTPUT_TOKENS",
    "MAX_REFERENCE_IMAGES",
    "OFFLINE_SEED",
    "OFFLINE_IMAGE_DELAY_MS",
    "OFFLINE_VIDEO_DELAY_MS",
    "SCRIPT_MODELS",
    "PRICE_GENERATE_DRAMA",
    "PRICE_IMPROVE_DRAMA",
    "PRICE_CRITIQUE_DRAMA",
    "PRICE_EPISODE_SCENES",
    "PRICE_IMAGE",
    "PRICE_VIDEO_PER_SECOND",
    "PRICE_VOICE_PER_10_SECONDS",
    "PRICING",
];

impl AiSettings {
    /// Every variable of [`ENV_VARS`] with the value in effect, defaults included, for
    /// `drama-server config`. Keys show only whether they are set.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let key = |k: &Option<ApiKey>| if k.is_some() { "<set>" } else { "<unset>" }.to_owned();
        let image_provider = match self.image_provider {
            ImageProviderChoice::Auto => "auto",
            ImageProviderChoice::NanoBanana => "nano-banana",
            ImageProviderChoice::Gemini => "gemini",
            ImageProviderChoice::Offline => "offline",
        };
        vec![
            ("AI_OFFLINE", self.ai_offline.to_string()),
            ("GEMINI_API_KEY", key(&self.gemini_api_key)),
            ("GEMINI_API_BASE", self.gemini_api_base.clone()),
            ("GEMINI_DRAMA_MODEL", self.gemini_drama_model.clone()),
            ("GEMINI_IMAGE_MODEL", self.gemini_image_model.clone()),
            ("OPENAI_API_KEY", key(&self.openai_api_key)),
            ("OPENAI_API_BASE", self.openai_api_base.clone()),
            ("GPT_MODEL", self.gpt_model.clone()),
            ("NANO_BANANA_API_KEY", key(&self.nano_banana_api_key)),
            ("NANO_BANANA_API_BASE", self.nano_banana_api_base.clone()),
            ("NANO_BANANA_MODEL", self.nano_banana_model.clone()),
            ("IMAGE_PROVIDER", image_provider.to_owned()),
            ("SORA_API_KEY", key(&self.sora_api_key)),
            ("SORA_API_BASE", self.sora_api_base.clone()),
            ("SORA_MODEL", self.sora_model.clone()),
            ("SORA_HD", self.sora_hd.to_string()),
            ("DEFAULT_ASPECT_RATIO", self.default_aspect_ratio.clone()),
            ("MAX_RETRIES", self.max_retries.to_string()),
            ("RETRY_BASE_DELAY_MS", self.retry_base_delay_ms.to_string()),
            ("RETRY_MAX_DELAY_MS", self.retry_max_delay_ms.to_string()),
            (
                "MAX_RETRY_AFTER_SECS",
                self.max_retry_after_secs.to_string(),
            ),
            (
                "CONNECT_TIMEOUT_SECS",
                self.connect_timeout_secs.to_string(),
            ),
            ("TEXT_TIMEOUT_SECS", self.text_timeout_secs.to_string()),
            ("IMAGE_TIMEOUT_SECS", self.image_timeout_secs.to_string()),
            (
                "VIDEO_REQUEST_TIMEOUT_SECS",
                self.video_request_timeout_secs.to_string(),
            ),
            (
                "DOWNLOAD_TIMEOUT_SECS",
                self.download_timeout_secs.to_string(),
            ),
            (
                "DOWNLOAD_ALLOW_LOCAL",
                self.download_allow_local.to_string(),
            ),
            ("MAX_IMAGE_BYTES", self.max_image_bytes.to_string()),
            ("MAX_VIDEO_BYTES", self.max_video_bytes.to_string()),
            (
                "VIDEO_POLL_INTERVAL_MS",
                self.video_poll_interval_ms.to_string(),
            ),
            ("VIDEO_DEADLINE_SECS", self.video_deadline_secs.to_string()),
            ("MAX_OUTPUT_TOKENS", self.max_output_tokens.to_string()),
            (
                "MAX_REFERENCE_IMAGES",
                self.max_reference_images.to_string(),
            ),
            ("OFFLINE_SEED", self.offline_seed.to_string()),
            (
                "OFFLINE_IMAGE_DELAY_MS",
                self.offline_image_delay_ms.to_string(),
            ),
            (
                "OFFLINE_VIDEO_DELAY_MS",
                self.offline_video_delay_ms.to_string(),
            ),
            ("SCRIPT_MODELS", self.script_models.clone()),
            (
                "PRICE_GENERATE_DRAMA",
                self.price_generate_drama.to_string(),
            ),
            ("PRICE_IMPROVE_DRAMA", self.price_improve_drama.to_string()),
            (
                "PRICE_CRITIQUE_DRAMA",
                self.price_critique_drama.to_string(),
            ),
            (
                "PRICE_EPISODE_SCENES",
                self.price_episode_scenes.to_string(),
            ),
            ("PRICE_IMAGE", self.price_image.to_string()),
            (
                "PRICE_VIDEO_PER_SECOND",
                self.price_video_per_second.to_string(),
            ),
            (
                "PRICE_VOICE_PER_10_SECONDS",
                self.price_voice_per_10_seconds.to_string(),
            ),
            (
                "PRICING",
                if self.pricing { "on" } else { "off" }.to_owned(),
            ),
        ]
    }

    /// Whether a paid provider is configured (a key set and `AI_OFFLINE` off): calls then
    /// cost money.
    pub fn uses_paid_providers(&self) -> bool {
        !self.ai_offline
            && (self.gemini_api_key.is_some()
                || self.openai_api_key.is_some()
                || self.nano_banana_api_key.is_some()
                || self.sora_api_key.is_some())
    }

    /// Reads the variables of [`ENV_VARS`] from the process environment.
    ///
    /// # Errors
    /// [`AiError::Config`] naming a variable whose value does not parse.
    pub fn from_env() -> Result<Self, AiError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables of [`ENV_VARS`] through `lookup` (tests pass a map). Unset and
    /// empty variables keep their defaults.
    ///
    /// # Errors
    /// [`AiError::Config`] naming a variable whose value does not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AiError> {
        let mut map = serde_json::Map::new();
        for name in ENV_VARS {
            let Some(value) = lookup(name).map(|v| v.trim().to_owned()) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let key = name.to_lowercase();
            let typed = match Self::default_value_kind(&key) {
                Kind::Text => serde_json::Value::String(value),
                Kind::Number => {
                    value
                        .parse::<u64>()
                        .map(serde_json::Value::from)
                        .map_err(|_| {
                            AiError::Config(format!("{name} must be a whole number, got {value:?}"))
                        })?
                }
                Kind::Flag => serde_json::Value::Bool(parse_flag(&value).ok_or_else(|| {
                    AiError::Config(format!("{name} must be true or false, got {value:?}"))
                })?),
            };
            map.insert(key, typed);
        }
        let settings: Self = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| AiError::Config(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    fn default_value_kind(key: &str) -> Kind {
        match key {
            "ai_offline" | "sora_hd" | "download_allow_local" | "pricing" => Kind::Flag,
            k if k.ends_with("_ms")
                || k.ends_with("_secs")
                || k.starts_with("max_")
                || k.starts_with("price_")
                || k == "offline_seed" =>
            {
                Kind::Number
            }
            _ => Kind::Text,
        }
    }

    /// Checks values that would make calls fail later.
    ///
    /// # Errors
    /// [`AiError::Config`] naming the setting.
    pub fn check(&self) -> Result<(), AiError> {
        for (name, url) in [
            ("GEMINI_API_BASE", &self.gemini_api_base),
            ("OPENAI_API_BASE", &self.openai_api_base),
            ("NANO_BANANA_API_BASE", &self.nano_banana_api_base),
            ("SORA_API_BASE", &self.sora_api_base),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(AiError::Config(format!(
                    "{name} must be an http(s) URL, got {url:?}"
                )));
            }
        }
        for (name, secs) in [
            ("TEXT_TIMEOUT_SECS", self.text_timeout_secs),
            ("IMAGE_TIMEOUT_SECS", self.image_timeout_secs),
            (
                "VIDEO_REQUEST_TIMEOUT_SECS",
                self.video_request_timeout_secs,
            ),
            ("DOWNLOAD_TIMEOUT_SECS", self.download_timeout_secs),
            ("CONNECT_TIMEOUT_SECS", self.connect_timeout_secs),
            ("VIDEO_DEADLINE_SECS", self.video_deadline_secs),
        ] {
            if secs == 0 {
                return Err(AiError::Config(format!("{name} must be at least 1")));
            }
        }
        for (name, bytes) in [
            ("MAX_IMAGE_BYTES", self.max_image_bytes),
            ("MAX_VIDEO_BYTES", self.max_video_bytes),
        ] {
            if bytes == 0 {
                return Err(AiError::Config(format!("{name} must be at least 1")));
            }
        }
        if self.max_output_tokens == 0 {
            return Err(AiError::Config(
                "MAX_OUTPUT_TOKENS must be at least 1".into(),
            ));
        }
        if self.default_aspect_ratio.trim().is_empty() {
            return Err(AiError::Config(
                "DEFAULT_ASPECT_RATIO must not be empty".into(),
            ));
        }
        crate::catalog::ModelCatalog::from_settings(self)?;
        Ok(())
    }

    /// What calls cost (the `PRICE_*` settings).
    pub fn cost_table(&self) -> CostTable {
        if !self.pricing {
            return CostTable::free();
        }
        CostTable {
            generate_drama: self.price_generate_drama,
            improve_drama: self.price_improve_drama,
            critique_drama: self.price_critique_drama,
            write_episode_scenes: self.price_episode_scenes,
            image: self.price_image,
            video_per_second: self.price_video_per_second,
            voice_per_10_seconds: self.price_voice_per_10_seconds,
        }
    }

    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            backoff: Backoff {
                initial: Duration::from_millis(self.retry_base_delay_ms),
                max: Duration::from_millis(self.retry_max_delay_ms),
                ..RetryPolicy::default().backoff
            },
            max_retry_after: Duration::from_secs(self.max_retry_after_secs),
        }
    }

    /// The video polling these settings describe.
    pub fn video_polling(&self) -> VideoPolling {
        VideoPolling {
            interval: Duration::from_millis(self.video_poll_interval_ms),
            deadline: Duration::from_secs(self.video_deadline_secs),
        }
    }

    /// The longest one provider call can take under these settings: each of its
    /// `MAX_RETRIES + 1` tries running to its `timeout_secs`, with the longest pause between
    /// them (`RETRY_MAX_DELAY_MS`, or a `Retry-After` up to `MAX_RETRY_AFTER_SECS`).
    fn longest_call(&self, timeout_secs: u64) -> Duration {
        let tries = u64::from(self.max_retries).saturating_add(1);
        let pause = Duration::from_millis(self.retry_max_delay_ms)
            .max(Duration::from_secs(self.max_retry_after_secs));
        Duration::from_secs(timeout_secs.saturating_mul(tries))
            .saturating_add(pause.saturating_mul(self.max_retries))
    }

    /// The longest a script task's provider work can take: its answer and the one repair it
    /// may ask for, each a call of `TEXT_TIMEOUT_SECS` tries. A job handler given less is cut
    /// off in the middle of a call that is billed anyway, and its next attempt pays again.
    pub fn longest_script_work(&self) -> Duration {
        self.longest_call(self.text_timeout_secs).saturating_mul(2)
    }

    /// The longest an image task's provider work can take: the call and the download of the
    /// file its answer links to.
    pub fn longest_image_work(&self) -> Duration {
        self.longest_call(self.image_timeout_secs)
            .saturating_add(self.longest_call(self.download_timeout_secs))
    }

    /// The longest a video task's provider work can take: the submission, the wait up to
    /// `VIDEO_DEADLINE_SECS`, the poll that was under way then, and the download.
    pub fn longest_video_work(&self) -> Duration {
        self.longest_call(self.video_request_timeout_secs)
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(self.video_deadline_secs))
            .saturating_add(self.longest_call(self.download_timeout_secs))
    }

    /// Whether any script provider (Gemini or OpenAI) has a key.
    pub fn has_script_provider(&self) -> bool {
        !self.ai_offline && (self.gemini_api_key.is_some() || self.openai_api_key.is_some())
    }

    #[cfg(feature = "providers")]
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    #[cfg(feature = "providers")]
    pub(crate) fn download_timeout(&self) -> Duration {
        Duration::from_secs(self.download_timeout_secs)
    }
}

enum Kind {
    Text,
    Number,
    Flag,
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_listing_names_every_variable_once_and_hides_keys() {
        let settings = AiSettings::from_lookup(|name| {
            (name == "SORA_API_KEY").then(|| "sk-secret".to_owned())
        })
        .unwrap_or_default();
        let listed = settings.effective();
        let names: Vec<&str> = listed.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ENV_VARS);
        assert!(listed.iter().all(|(_, v)| !v.contains("sk-secret")));
        assert!(listed.contains(&("SORA_API_KEY", "<set>".to_owned())));
        assert!(settings.uses_paid_providers());
        assert!(!AiSettings::default().uses_paid_providers());
    }
}
