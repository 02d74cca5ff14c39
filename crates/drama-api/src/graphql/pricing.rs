//! `models`: the script models a request may name and what calls cost, as `GET /models`;
//! `estimate`: what a generation would cost, as `POST /dramas/{id}/estimate`.

use juniper::graphql_object;

use super::context::Ctx;

/// One script model a request may name.
pub struct ModelPrice(pub(crate) drama_app::ModelPrice);

#[graphql_object(context = Ctx)]
impl ModelPrice {
    /// The name to send as `model`.
    fn name(&self) -> &str {
        &self.0.name
    }
    /// The provider that serves it (`gemini`, `openai`, `offline`).
    fn provider(&self) -> &str {
        &self.0.provider
    }
    /// Whether requests that name no model get this one.
    fn default(&self) -> bool {
        self.0.default
    }
    /// Credits for writing a drama from a premise.
    fn generate_drama(&self) -> i32 {
        credits(self.0.prices.generate_drama)
    }
    /// Credits for rewriting a drama from feedback.
    fn improve_drama(&self) -> i32 {
        credits(self.0.prices.improve_drama)
    }
    /// Credits for a critique.
    fn critique_drama(&self) -> i32 {
        credits(self.0.prices.critique_drama)
    }
    /// Credits for writing one episode's scenes.
    fn write_episode_scenes(&self) -> i32 {
        credits(self.0.prices.write_episode_scenes)
    }
    /// Per-token prices, when calls of this model are priced by their usage (null: per call
    /// only). The per-call prices above are then what each call holds, the most it costs.
    fn token_prices(&self) -> Option<TokenPrices> {
        self.0.token_prices.map(TokenPrices)
    }
}

/// Credits per million tokens of a model whose calls are priced by their usage.
pub struct TokenPrices(pub(crate) drama_app::TokenPrices);

#[graphql_object(context = Ctx)]
impl TokenPrices {
    /// Credits per million input (prompt) tokens.
    fn input_per_million(&self) -> i32 {
        credits(self.0.input_per_million)
    }
    /// Credits per million output tokens (thinking tokens included).
    fn output_per_million(&self) -> i32 {
        credits(self.0.output_per_million)
    }
}

/// The price list.
pub struct Pricing(pub(crate) drama_app::Pricing);

#[graphql_object(context = Ctx)]
impl Pricing {
    /// The allowed script models, the default first.
    fn models(&self) -> Vec<ModelPrice> {
        self.0.models.iter().cloned().map(ModelPrice).collect()
    }
    /// Credits per image.
    fn image(&self) -> i32 {
        credits(self.0.media.image)
    }
    /// Credits per second of video.
    fn video_per_second(&self) -> i32 {
        credits(self.0.media.video_per_second)
    }
    /// Credits per started 10 seconds of speech.
    fn voice_per_10_seconds(&self) -> i32 {
        credits(self.0.media.voice_per_10_seconds)
    }
    /// Whether calls served by the offline provider are priced as real ones.
    fn offline_calls_priced(&self) -> bool {
        self.0.offline_calls_priced
    }
    /// Whether this deployment bills at all (`PRICING=off`: every price is 0).
    fn billed(&self) -> bool {
        self.0.billed
    }
}

/// What a generation would do and cost, without starting it.
pub struct Estimate(pub(crate) drama_app::pipeline::Estimate);

/// One task kind's share of an estimate.
pub struct KindEstimate {
    kind: String,
    tasks: usize,
    cost: i64,
}

#[graphql_object(context = Ctx)]
impl KindEstimate {
    /// The task kind (`portrait`, `clip`, …).
    fn kind(&self) -> &str {
        &self.kind
    }
    /// Tasks of the kind.
    fn tasks(&self) -> i32 {
        count(self.tasks)
    }
    /// Their credits.
    fn cost(&self) -> i32 {
        amount(self.cost)
    }
}

#[graphql_object(context = Ctx)]
impl Estimate {
    /// Tasks that would start.
    fn tasks(&self) -> i32 {
        count(self.0.tasks)
    }
    /// Credits debited when the run starts.
    fn cost(&self) -> i32 {
        amount(self.0.cost)
    }
    /// `cost` plus the storyboards and clips of the scenes the run is expected to write.
    fn expected_cost(&self) -> i32 {
        amount(self.0.expected_cost)
    }
    /// `cost` plus the storyboards and clips of the most scenes a writer may write: the most
    /// the run can debit.
    fn max_cost(&self) -> i32 {
        amount(self.0.max_cost)
    }
    /// Episodes whose scenes the run writes.
    fn episodes_to_write(&self) -> i32 {
        count(self.0.episodes_to_write)
    }
    /// Scenes the run is expected to write, in all.
    fn scenes_to_write(&self) -> i32 {
        count(self.0.scenes_to_write)
    }
    /// Scenes expected per written episode.
    fn scenes_per_episode(&self) -> i32 {
        count(self.0.scenes_per_episode)
    }
    /// Per task kind, by kind name.
    fn by_kind(&self) -> Vec<KindEstimate> {
        self.0
            .by_kind
            .iter()
            .map(|(kind, k)| KindEstimate {
                kind: kind.clone(),
                tasks: k.tasks,
                cost: k.cost,
            })
            .collect()
    }
}

/// Counts and credit amounts above GraphQL's 32-bit `Int` are shown as its cap.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn amount(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// GraphQL's `Int` is 32 bits; prices above it are configuration errors shown as the cap.
fn credits(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
