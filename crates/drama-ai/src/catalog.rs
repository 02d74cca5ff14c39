//! The script models a request may name, where each routes and what its calls cost.
//!
//! The old server sent any model name it did not know to OpenAI at one flat price, so a
//! client could pick the dearest model the key allowed and pay as for the cheapest. Here a
//! name is served only when the catalogue lists it, and its calls are priced as listed.

use std::fmt;

use serde::Serialize;

use crate::error::{AiError, Provider};
use crate::registry::{DEFAULT_GPT_MODEL, DEFAULT_SCRIPT_MODEL, ScriptModelChoice};
use crate::settings::AiSettings;
use crate::usage::{CallKind, CostTable};

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

/// One model a request may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptModelSpec {
    /// The name clients send (`model` in requests).
    pub name: String,
    /// Where it routes and which upstream model it asks for.
    pub route: ScriptModelChoice,
    /// What its calls cost.
    pub prices: ScriptPrices,
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
                },
                ScriptModelSpec {
                    name: DEFAULT_GPT_MODEL.to_owned(),
                    route: ScriptModelChoice::OpenAi(settings.gpt_model.clone()),
                    prices: base,
                },
                ScriptModelSpec {
                    name: LEGACY_GPT_NAME.to_owned(),
                    route: ScriptModelChoice::OpenAi(settings.gpt_model.clone()),
                    prices: base,
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
            }
        }
        if !models.iter().any(|m| m.name == "offline") {
            models.push(ScriptModelSpec {
                name: "offline".to_owned(),
                route: ScriptModelChoice::Offline,
                prices: ScriptPrices::free(),
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

/// Parses `name=provider[:upstream][@generate/improve/critique/episode],…`.
fn parse_entries(list: &str, base: ScriptPrices) -> Result<Vec<ScriptModelSpec>, AiError> {
    let bad = |entry: &str, why: &str| {
        AiError::Config(format!(
            "SCRIPT_MODELS entry {entry:?} {why}; expected \
             name=provider[:upstream-model][@generate/improve/critique/episode], \
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
    fn bad_entries_name_themselves() {
        for (list, why) in [
            ("flash", "no '='"),
            ("flash=anthropic", "unknown provider"),
            ("flash=gemini@1/2", "four whole numbers"),
            ("a=gemini,a=openai", "repeats"),
            ("bad name=gemini", "letters"),
        ] {
            let err = ModelCatalog::from_settings(&settings(list)).unwrap_err();
            assert!(err.to_string().contains(why), "{list}: {err}");
        }
    }
}
