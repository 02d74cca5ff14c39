//! What a client may choose and what it costs: the allowed script models with their prices,
//! and the prices of media calls (`GET /models`, GraphQL `models`).

use serde::Serialize;

use crate::App;

pub use drama_ai::TokenPrices;

/// One script model a request may name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPrice {
    /// The name to send as `model`.
    pub name: String,
    /// Which provider serves it (`gemini`, `openai`, `offline`).
    #[cfg_attr(feature = "openapi", schema(value_type = doc::Provider))]
    pub provider: String,
    /// Whether requests that name no model get this one.
    pub default: bool,
    /// Credits per call: writing a drama, rewriting it from feedback, a critique, one
    /// episode's scenes. For a token-priced model, what each call holds (the most it costs).
    #[cfg_attr(feature = "openapi", schema(value_type = doc::ScriptPrices))]
    pub prices: drama_ai::ScriptPrices,
    /// Credits per million input and output tokens, when calls are priced by their usage:
    /// each call is debited its per-call price when its run starts, and what its usage did
    /// not cost is credited back when it completes.
    #[cfg_attr(feature = "openapi", schema(value_type = doc::TokenPrices))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_prices: Option<TokenPrices>,
}

/// Credits per media call (the models behind them are chosen by the operator).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MediaPrices {
    /// One image (portrait, storyboard, cover).
    pub image: u32,
    /// One second of video.
    pub video_per_second: u32,
    /// Every started 10 seconds of speech.
    pub voice_per_10_seconds: u32,
}

/// The price list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pricing {
    /// The allowed script models, the default first.
    pub models: Vec<ModelPrice>,
    /// Media prices.
    pub media: MediaPrices,
    /// Whether calls served by the offline provider are priced as real ones
    /// (`PRICE_OFFLINE_CALLS`); otherwise they are free.
    pub offline_calls_priced: bool,
    /// Whether this deployment bills at all: with `PRICING=off` every price is 0 and runs
    /// are recorded in the ledger at price 0.
    pub billed: bool,
}

impl App {
    /// The price list clients choose from.
    pub fn pricing(&self) -> Pricing {
        let catalog = self.ai.catalog();
        let default = catalog.default_name().to_owned();
        let mut models: Vec<ModelPrice> = catalog
            .models()
            .iter()
            .map(|m| ModelPrice {
                name: m.name.clone(),
                provider: m.provider().as_str().to_owned(),
                default: m.name == default,
                prices: m.prices,
                token_prices: m.token_prices,
            })
            .collect();
        models.sort_by_key(|m| !m.default);
        let table = self.ai.cost_table(None);
        Pricing {
            models,
            media: MediaPrices {
                image: table.image,
                video_per_second: table.video_per_second,
                voice_per_10_seconds: table.voice_per_10_seconds,
            },
            offline_calls_priced: self.price_offline && self.ai.billed(),
            billed: self.ai.billed(),
        }
    }
}

/// The JSON Schemas of the AI crate's price types, as `GET /models` writes them.
#[cfg(feature = "openapi")]
mod doc {
    // These types are never built: only their derived schemas are read.
    #![allow(dead_code)]

    /// Credits per script call.
    #[derive(utoipa::ToSchema)]
    pub(super) struct ScriptPrices {
        generate_drama: u32,
        improve_drama: u32,
        critique_drama: u32,
        write_episode_scenes: u32,
    }

    /// Credits per million tokens, present when the model's calls are priced by their usage:
    /// each call is debited its per-call price (`prices`, the hold) when its run starts, and
    /// what its usage did not cost, rounded up to a whole credit, is credited back
    /// (`usage_settle`) when it completes.
    #[derive(utoipa::ToSchema)]
    pub(super) struct TokenPrices {
        input_per_million: u32,
        output_per_million: u32,
    }

    /// Who serves a script model.
    #[derive(utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub(super) enum Provider {
        Gemini,
        Openai,
        Offline,
    }
}
