//! The script models a request may name, where each routes and what its calls cost.
//!
//! The old server sent any model name it did not know to OpenAI at one flat price, so a
//! client could pick the dearest model the key allowed and pay as for the cheapest. Here a
//! name is served only when the catalogue lists it, and its calls are priced as listed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{AiError, Provider};
use crate::registry::{DEFAULT_GPT_MODEL, DEFAULT_SCRIPT_MODEL, ScriptModelChoice};
use crate::settings::AiSettings;
use crate::usage::{CallKind, CostTable, Usage};

/// The old server's documented OpenAI name (`config.py`), kept so its clients keep working.
const LEGACY_GPT_NAME: &str = "gpt-5";

/// Credits per script call of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScriptPrices {
    /// Writing a drama from a premise.
    pub generate_drama: u32,
    /// Rewriting a drama from feedback.
    pub improve_drama: u32,
    /// A critique.
    pub critique_drama: u32,
    /// Writing one episode's scenes.
    pub write_episode_scenes: u32,
}

impl ScriptPrices {
    /// The script prices of a cost table.
    pub fn of(table: &CostTable) -> Self {
        Self {
            generate_drama: table.generate_drama,
            improve_drama: table.improve_drama,
            critique_drama: table.critique_drama,
            write_episode_scenes: table.write_episode_scenes,
        }
    }

    /// Nothing costs anything.
    pub fn free() -> Self {
        Self::of(&CostTable::free())
    }

    /// The price of one call of `kind` (0 for calls that are not script calls).
    pub fn of_call(&self, kind: CallKind) -> u32 {
        match kind {
            CallKind::GenerateDrama => self.generate_drama,
            CallKind::ImproveDrama => self.improve_drama,
            CallKind::CritiqueDrama => self.critique_drama,
            CallKind::WriteEpisodeScenes => self.write_episode_scenes,
            CallKind::Image | CallKind::Video | CallKind::Voice => 0,
        }
    }
}

/// Credits per million tokens of one model, for script calls priced by what they consumed.
///
/// A token-priced call is still debited its per-call price up front: that is the hold, the
/// most it can cost. When it completes, its price is what its usage comes to at these rates,
/// rounded up to a whole credit and never more than the hold; the rest of the hold is
/// credited back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPrices {
    /// Credits per million input (prompt) tokens.
    pub input_per_million: u32,
    /// Credits per million output tokens (thinking tokens included).
    pub output_per_million: u32,
}

impl TokenPrices {
    /// What `usage` costs at these rates, rounded up to a whole credit (not capped); `None`
    /// when requests were made but no tokens reported (an endpoint or proxy that leaves the
    /// usage out, an API change): such a call is not free, it keeps its per-call price.
    pub fn price(&self, usage: &Usage) -> Option<u64> {
        if usage.requests > 0 && usage.input_tokens == 0 && usage.output_tokens == 0 {
            return None;
        }
        // u128: a u64 count of tokens times a u32 rate cannot overflow it.
        let micro = u128::from(usage.input_tokens) * u128::from(self.input_per_million)
            + u128::from(usage.output_tokens) * u128::from(self.output_per_million);
        Some(u64::try_from(micro.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }
}

/// One model a request may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptModelSpec {
    /// The name clients send (`model` in requests).
    pub name: String,
    /// Where it routes and which upstream model it asks for.
    pub route: ScriptModelChoice,
    /// What its calls cost (for a token-priced model: what each call holds).
    pub prices: ScriptPrices,
    /// Per-token prices: set, a call's price is settled from its usage when it completes.
    pub token_prices: Option<TokenPrices>,
}

impl ScriptModelSpec {
    /// The provider that serves it.
    pub fn provider(&self) -> Provider {
        match self.route {
            ScriptModelChoice::Gemini(_) => Provider::Gemini,
            ScriptModelChoice::OpenAi(_) => Provider::OpenAi,
            ScriptModelChoice::Offline => Provider::Offline,
        }
    }
}

/// The allowed script models, in the order operators listed them (the default first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCatalog {
    models: Vec<ScriptModelSpec>,
}

impl ModelCatalog {
    /// The catalogue `settings` describe: `SCRIPT_MODELS` when set, else the built-in list
    /// (`gemini-3-pro-preview` → Gemini with `GEMINI_DRAMA_MODEL`, `gpt-5.1` and the old
    /// server's `gpt-5` → OpenAI with `GPT_MODEL`, `offline`), all at the `PRICE_*` prices.
    /// `offline` is always allowed: it is free and calls nothing.
    ///
    /// # Errors
    /// [`AiError::Config`] naming the entry of `SCRIPT_MODELS` that does not parse.
    pub fn from_settings(settings: &AiSettings) -> Result<Self, AiError> {
        let base = ScriptPrices::of(&settings.cost_table());
        let mut models = if settings.script_models.trim().is_empty() {
            vec![
                ScriptModelSpec {
                    name: DEFAULT_SCRIPT_MODEL.to_owned(),
                    route: ScriptModelChoice::Gemini(settings.gemini_drama_model.clone()),
                    prices: base,
                    token_prices: None,
                },
                ScriptModelSpec {
                    name: DEFAULT_GPT_MODEL.to_owned(),
                    route: ScriptModelChoice::OpenAi(settings.gpt_model.clone()),
                    prices: base,
                    token_prices: None,
                },
                ScriptModelSpec {
                    name: LEGACY_GPT_NAME.to_owned(),
                    route: ScriptModelChoice::OpenAi(settings.gpt_model.clone()),
                    prices: base,
                    token_prices: None,
                },
            ]
        } else {
            parse_entries(&settings.script_models, base)?
        };
        // The default leads the list, so the list a refusal names and the one `GET /models`
        // shows read alike.
        if let Some(at) = models.iter().position(|m| m.name == DEFAULT_SCRIPT_MODEL) {
            let default = models.remove(at);
            models.insert(0, default);
        }
        if !settings.pricing {
            // A deployment that does not bill: operators' own prices are off too.
            for m in &mut models {
                m.prices = ScriptPrices::free();
                m.token_prices = None;
            }
        }
        if !models.iter().any(|m| m.name == "offline") {
            models.push(ScriptModelSpec {
                name: "offline".to_owned(),
                route: ScriptModelChoice::Offline,
                prices: ScriptPrices::free(),
                token_prices: None,
            });
        }
        Ok(Self { models })
    }

    /// A catalogue that allows nothing but `offline` (a fallback that is never reached with
    /// the built-in list).
    pub(crate) fn empty() -> Self {
        Self {
            models: vec![ScriptModelSpec {
                name: "offline".to_owned(),
                route: ScriptModelChoice::Offline,
                prices: ScriptPrices::free(),
                token_prices: None,
            }],
        }
    }

    /// Every allowed model, the default first.
    pub fn models(&self) -> &[ScriptModelSpec] {
        &self.models
    }

    /// The model a request gets when it names none: `gemini-3-pro-preview` when listed,
    /// else the first entry (the list starts with it).
    pub fn default_name(&self) -> &str {
        self.models
            .first()
            .map_or(DEFAULT_SCRIPT_MODEL, |m| m.name.as_str())
    }

    /// The entry for a requested name (trimmed; `None` or empty is the default).
    ///
    /// # Errors
    /// [`AiError::UnknownModel`] listing the allowed names.
    pub fn resolve(&self, name: Option<&str>) -> Result<&ScriptModelSpec, AiError> {
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.default_name());
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| AiError::UnknownModel {
                name: name.to_owned(),
                allowed: self.models.iter().map(|m| m.name.clone()).collect(),
            })
    }
}

impl fmt::Display for ModelCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        f.write_str(&names.join(", "))
    }
}

/// Parses `in<credits>/out<credits>` (credits per million input and output tokens).
fn parse_token_prices(text: &str) -> Option<TokenPrices> {
    let (input, output) = text.split_once('/')?;
    let rate = |part: &str, tag: &str| -> Option<u32> {
        let digits = part.trim().strip_prefix(tag)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Bounded by what GraphQL's Int can carry, so both APIs publish the same number.
        digits
            .parse::<u32>()
            .ok()
            .filter(|n| i32::try_from(*n).is_ok())
    };
    let prices = TokenPrices {
        input_per_million: rate(input, "in")?,
        output_per_million: rate(output, "out")?,
    };
    // Both rates 0 would hand every hold back in full: a typo, not a price.
    (prices.input_per_million > 0 || prices.output_per_million > 0).then_some(prices)
}

/// Parses `name=provider[:upstream][@generate/improve/critique/episode][+in<N>/out<M>],…`.
fn parse_entries(list: &str, base: ScriptPrices) -> Result<Vec<ScriptModelSpec>, AiError> {
    let bad = |entry: &str, why: &str| {
        AiError::Config(format!(
            "SCRIPT_MODELS entry {entry:?} {why}; expected \
             name=provider[:upstream-model][@generate/improve/critique/episode]\
             [+in<credits per million input tokens>/out<credits per million output tokens>], \
             provider one of gemini, openai, offline"
        ))
    };
    let mut models: Vec<ScriptModelSpec> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, rest) = entry
            .split_once('=')
            .ok_or_else(|| bad(entry, "has no '='"))?;
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name.len() <= 100
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !valid_name {
            return Err(bad(entry, "has a name that is not letters, digits, - . _"));
        }
        if models.iter().any(|m| m.name == name) {
            return Err(bad(entry, "repeats a name"));
        }
        let (rest, token_prices) = match rest.split_once('+') {
            Some((rest, tokens)) => match parse_token_prices(tokens) {
                Some(t) => (rest, Some(t)),
                None => {
                    return Err(bad(
                        entry,
                        "has token prices that are not in<whole number>/out<whole number> \
                         (at most 2147483647, not both 0)",
                    ));
                }
            },
            None => (rest, None),
        };
        let (route, prices) = match rest.split_once('@') {
            Some((route, prices)) => (route.trim(), Some(prices.trim())),
            None => (rest.trim(), None),
        };
        let (provider, upstream) = match route.split_once(':') {
            Some((p, u)) => (p.trim(), Some(u.trim()).filter(|u| !u.is_empty())),
            None => (route, None),
        };
        let upstream = upstream.unwrap_or(name).to_owned();
        let route = match provider {
            "gemini" => ScriptModelChoice::Gemini(upstream),
            "openai" => ScriptModelChoice::OpenAi(upstream),
            "offline" => ScriptModelChoice::Offline,
            _ => return Err(bad(entry, "names an unknown provider")),
        };
        let prices = match prices {
            None => base,
            Some(p) => {
                let parts: Result<Vec<u32>, _> = p.split('/').map(|n| n.trim().parse()).collect();
                match parts.as_deref() {
                    Ok([generate, improve, critique, episode]) => ScriptPrices {
                        generate_drama: *generate,
                        improve_drama: *improve,
                        critique_drama: *critique,
                        write_episode_scenes: *episode,
                    },
                    _ => return Err(bad(entry, "has prices that are not four whole numbers")),
                }
            }
        };
        models.push(ScriptModelSpec {
            name: name.to_owned(),
            route,
            prices,
            token_prices,
        });
    }
    if models.is_empty() {
        return Err(AiError::Config("SCRIPT_MODELS lists no model".into()));
    }
    Ok(models)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(list: &str) -> AiSettings {
        AiSettings {
            script_models: list.to_owned(),
            gpt_model: "gpt-upstream".into(),
            ..AiSettings::default()
        }
    }

    #[test]
    fn the_built_in_list_keeps_the_old_names_and_refuses_others() {
        let c = ModelCatalog::from_settings(&settings("")).unwrap();
        let names: Vec<&str> = c.models().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["gemini-3-pro-preview", "gpt-5.1", "gpt-5", "offline"]
        );
        assert_eq!(c.resolve(None).unwrap().name, "gemini-3-pro-preview");
        assert_eq!(
            c.resolve(Some("gpt-5")).unwrap().route,
            ScriptModelChoice::OpenAi("gpt-upstream".into())
        );
        let err = c.resolve(Some("gpt-4o")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"gpt-4o\""), "{text}");
        assert!(
            text.contains("gemini-3-pro-preview, gpt-5.1, gpt-5, offline"),
            "{text}"
        );
    }

    #[test]
    fn pricing_off_makes_every_price_zero_even_the_operators_own() {
        let mut s = settings("flash=gemini:gemini-2.5-flash@2/2/1/1, gpt-5.1=openai");
        s.pricing = false;
        let c = ModelCatalog::from_settings(&s).unwrap();
        for m in c.models() {
            assert_eq!(m.prices, ScriptPrices::free(), "{}", m.name);
        }
        assert_eq!(s.cost_table(), CostTable::free());
        let off = AiSettings::from_lookup(|n| (n == "PRICING").then(|| "off".to_owned())).unwrap();
        assert!(!off.pricing);
        assert!(AiSettings::from_lookup(|n| (n == "PRICING").then(|| "maybe".to_owned())).is_err());
    }

    #[test]
    fn operators_list_models_with_their_own_prices() {
        let c = ModelCatalog::from_settings(&settings(
            "flash=gemini:gemini-2.5-flash@2/2/1/1, gpt-5.1=openai",
        ))
        .unwrap();
        let flash = c.resolve(Some("flash")).unwrap();
        assert_eq!(
            flash.route,
            ScriptModelChoice::Gemini("gemini-2.5-flash".into())
        );
        assert_eq!(flash.prices.of_call(CallKind::GenerateDrama), 2);
        assert_eq!(flash.prices.of_call(CallKind::WriteEpisodeScenes), 1);
        let gpt = c.resolve(Some("gpt-5.1")).unwrap();
        assert_eq!(gpt.route, ScriptModelChoice::OpenAi("gpt-5.1".into()));
        assert_eq!(gpt.prices, ScriptPrices::of(&CostTable::default()));
        // Without the built-in default listed, the first entry is the default.
        assert_eq!(c.resolve(None).unwrap().name, "flash");
        assert!(c.resolve(Some("offline")).is_ok());
        assert!(c.resolve(Some("gemini-3-pro-preview")).is_err());
    }

    #[test]
    fn token_prices_follow_the_call_prices_and_default_to_none() {
        let c = ModelCatalog::from_settings(&settings(
            "gpt-5.1=openai@10/10/3/8+in125/out1000, flash=gemini:gemini-2.5-flash+in30/out250, \
             pro=gemini",
        ))
        .unwrap();
        let gpt = c.resolve(Some("gpt-5.1")).unwrap();
        assert_eq!(gpt.prices.of_call(CallKind::GenerateDrama), 10);
        assert_eq!(
            gpt.token_prices,
            Some(TokenPrices {
                input_per_million: 125,
                output_per_million: 1000,
            })
        );
        let flash = c.resolve(Some("flash")).unwrap();
        assert_eq!(
            flash.route,
            ScriptModelChoice::Gemini("gemini-2.5-flash".into())
        );
        // Without `@…` the hold is the `PRICE_*` script price.
        assert_eq!(flash.prices, ScriptPrices::of(&CostTable::default()));
        assert_eq!(flash.token_prices.map(|t| t.output_per_million), Some(250));
        assert_eq!(c.resolve(Some("pro")).unwrap().token_prices, None);
        assert_eq!(c.resolve(Some("offline")).unwrap().token_prices, None);
        // The built-in list prices per call only.
        let built_in = ModelCatalog::from_settings(&settings("")).unwrap();
        assert!(built_in.models().iter().all(|m| m.token_prices.is_none()));
        // PRICING=off drops token prices with the rest.
        let mut off = settings("gpt-5.1=openai+in125/out1000");
        off.pricing = false;
        let off = ModelCatalog::from_settings(&off).unwrap();
        assert!(off.models().iter().all(|m| m.token_prices.is_none()));
    }

    #[test]
    fn a_token_price_is_rounded_up_to_a_whole_credit() {
        let t = TokenPrices {
            input_per_million: 125,
            output_per_million: 1000,
        };
        let usage = |input_tokens, output_tokens| Usage {
            input_tokens,
            output_tokens,
            ..Usage::default()
        };
        assert_eq!(t.price(&usage(0, 0)), Some(0));
        // 1 input token is 0.000125 credits: one credit.
        assert_eq!(t.price(&usage(1, 0)), Some(1));
        // 8,000 in + 1,000 out = 1 + 1 credits exactly.
        assert_eq!(t.price(&usage(8_000, 1_000)), Some(2));
        assert_eq!(t.price(&usage(8_001, 1_000)), Some(3));
        // A request that reported no tokens keeps the per-call price.
        let unreported = Usage {
            requests: 1,
            ..Usage::default()
        };
        assert_eq!(t.price(&unreported), None);
        // No overflow at the extremes.
        let most = TokenPrices {
            input_per_million: u32::MAX,
            output_per_million: u32::MAX,
        };
        assert!(
            most.price(&usage(u64::MAX, u64::MAX))
                .is_some_and(|p| p > 0)
        );
    }

    #[test]
    fn bad_entries_name_themselves() {
        for (list, why) in [
            ("flash", "no '='"),
            ("flash=anthropic", "unknown provider"),
            ("flash=gemini@1/2", "four whole numbers"),
            ("flash=gemini+in1", "token prices"),
            ("flash=gemini+in1/out", "token prices"),
            ("flash=gemini@1/1/1/1+out1/in1", "token prices"),
            ("flash=gemini+in-1/out2", "token prices"),
            ("flash=gemini+in1/out99999999999", "token prices"),
            ("flash=gemini+in1/out2147483648", "token prices"),
            ("flash=gemini+in0/out0", "not both 0"),
            ("a=gemini,a=openai", "repeats"),
            ("bad name=gemini", "letters"),
        ] {
            let err = ModelCatalog::from_settings(&settings(list)).unwrap_err();
            assert!(err.to_string().contains(why), "{list}: {err}");
        }
    }
}
