//! `models`: the script models a request may name and what calls cost, as `GET /models`.

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

/// GraphQL's `Int` is 32 bits; prices above it are configuration errors shown as the cap.
fn credits(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
