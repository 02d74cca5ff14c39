#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;

use drama_ai::{
    AiError, AiProviders, AiSettings, ApiKey, CallKind, CostTable, Generated, ImageProviderChoice,
    ModelInfo, Provider, ScriptModelChoice, Usage, choose_script_model,
};

fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn listed_model_names_route_and_every_other_name_is_refused() {
    let s = AiSettings {
        gemini_drama_model: "gemini-3-pro-preview-11-2025".into(),
        gpt_model: "gpt-5".into(),
        ..AiSettings::default()
    };
    assert_eq!(
        choose_script_model(None, &s).unwrap(),
        ScriptModelChoice::Gemini("gemini-3-pro-preview-11-2025".into())
    );
    assert_eq!(
        choose_script_model(Some(" "), &s).unwrap(),
        ScriptModelChoice::Gemini("gemini-3-pro-preview-11-2025".into())
    );
    assert_eq!(
        choose_script_model(Some("gpt-5.1"), &s).unwrap(),
        ScriptModelChoice::OpenAi("gpt-5".into())
    );
    // The old server's documented name for its OpenAI model.
    assert_eq!(
        choose_script_model(Some("gpt-5"), &s).unwrap(),
        ScriptModelChoice::OpenAi("gpt-5".into())
    );
    assert_eq!(
        choose_script_model(Some("offline"), &s).unwrap(),
        ScriptModelChoice::Offline
    );
    // Any other name, however close to a listed one, would be a price the catalogue does
    // not know: refused with the list.
    let allowed: Vec<String> = ["gemini-3-pro-preview", "gpt-5.1", "gpt-5", "offline"]
        .map(String::from)
        .to_vec();
    for bad in [
        "claude-3",
        "gpt-",
        "GPT-5",
        "gemini-x/../y",
        "llama",
        "gemini-2.5-pro",
        "gpt-4o-mini",
    ] {
        assert_eq!(
            choose_script_model(Some(bad), &s),
            Err(AiError::UnknownModel {
                name: bad.into(),
                allowed: allowed.clone()
            }),
            "{bad}"
        );
    }
}

// Without `providers` a selected provider is refused for that reason instead.
#[cfg(feature = "providers")]
#[test]
fn a_selected_provider_without_a_key_is_not_configured() {
    let settings = AiSettings {
        gemini_api_key: Some(ApiKey::new("k")),
        ..AiSettings::default()
    };
    let providers = AiProviders::from_settings(&settings).unwrap();
    assert!(!providers.offline_scripts());
    assert_eq!(
        providers.script_model(None).unwrap().model().provider,
        Provider::Gemini
    );
    let err = providers.script_model(Some("gpt-5.1")).err().unwrap();
    assert_eq!(
        err,
        AiError::NotConfigured {
            provider: Provider::OpenAi,
            variable: "OPENAI_API_KEY"
        }
    );
    assert_eq!(
        err.to_string(),
        "openai is not configured: set OPENAI_API_KEY"
    );
    assert_eq!(
        providers
            .script_model(Some("offline"))
            .unwrap()
            .model()
            .provider,
        Provider::Offline
    );
    // Gemini key, no nano banana key: images from Gemini; no Sora key: offline clips.
    assert_eq!(providers.image_provider(), Provider::Gemini);
    assert_eq!(providers.video_model().model().provider, Provider::Offline);

    let forced = AiSettings {
        image_provider: ImageProviderChoice::NanoBanana,
        ..AiSettings::default()
    };
    assert_eq!(
        AiProviders::from_settings(&forced).err().unwrap(),
        AiError::NotConfigured {
            provider: Provider::NanoBanana,
            variable: "NANO_BANANA_API_KEY"
        }
    );
}

#[test]
fn settings_read_the_peer_variable_names() {
    let s = AiSettings::from_lookup(lookup(&[
        ("GEMINI_API_KEY", "g-secret"),
        ("GEMINI_DRAMA_MODEL", "gemini-3-pro-preview"),
        ("OPENAI_API_KEY", "o-secret"),
        ("OPENAI_API_BASE", "https://proxy.example/v1"),
        ("GPT_MODEL", "gpt-5"),
        ("NANO_BANANA_API_KEY", "n-secret"),
        ("NANO_BANANA_API_BASE", "https://img.example"),
        ("SORA_API_KEY", "s-secret"),
        ("SORA_API_BASE", "https://video.example"),
        ("MAX_RETRIES", "4"),
        ("DEFAULT_ASPECT_RATIO", "9:16"),
        ("SORA_HD", "true"),
        ("IMAGE_PROVIDER", "gemini"),
        ("VIDEO_DEADLINE_SECS", ""),
    ]))
    .unwrap();
    assert_eq!(s.gemini_api_key.as_ref().unwrap().expose(), "g-secret");
    assert_eq!(s.openai_api_base, "https://proxy.example/v1");
    assert_eq!(s.gpt_model, "gpt-5");
    assert_eq!(s.nano_banana_api_base, "https://img.example");
    assert_eq!(s.sora_api_base, "https://video.example");
    assert_eq!(s.max_retries, 4);
    assert!(s.sora_hd);
    assert_eq!(s.image_provider, ImageProviderChoice::Gemini);
    assert_eq!(s.video_deadline_secs, 600, "empty keeps the default");
    assert_eq!(s.retry_policy().max_retries, 4);

    let debug = format!("{s:?}");
    for secret in ["g-secret", "o-secret", "n-secret", "s-secret"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("<set>"));
    assert_eq!(format!("{:?}", ApiKey::new("abc")), "ApiKey(<redacted>)");
}

#[test]
fn bad_values_name_their_variable() {
    let err = AiSettings::from_lookup(lookup(&[("MAX_RETRIES", "many")])).unwrap_err();
    assert!(err.to_string().contains("MAX_RETRIES"), "{err}");
    let err = AiSettings::from_lookup(lookup(&[("SORA_API_BASE", "ai.t8star.cn")])).unwrap_err();
    assert!(err.to_string().contains("SORA_API_BASE"), "{err}");
    let err = AiSettings::from_lookup(lookup(&[("AI_OFFLINE", "maybe")])).unwrap_err();
    assert!(err.to_string().contains("AI_OFFLINE"), "{err}");
    let err = AiSettings::from_lookup(lookup(&[("IMAGE_PROVIDER", "dalle")])).unwrap_err();
    assert!(matches!(err, AiError::Config(_)), "{err}");
    let err = AiSettings::from_lookup(lookup(&[("TEXT_TIMEOUT_SECS", "0")])).unwrap_err();
    assert!(err.to_string().contains("TEXT_TIMEOUT_SECS"), "{err}");
}

#[test]
fn ai_offline_wins_over_keys() {
    let s = AiSettings::from_lookup(lookup(&[
        ("AI_OFFLINE", "1"),
        ("GEMINI_API_KEY", "k"),
        ("SORA_API_KEY", "k"),
    ]))
    .unwrap();
    let providers = AiProviders::from_settings(&s).unwrap();
    assert!(providers.offline_scripts());
    assert_eq!(providers.image_provider(), Provider::Offline);
    assert_eq!(providers.video_model().model().provider, Provider::Offline);
}

#[test]
fn the_cost_table_charges_successes_and_nothing_offline() {
    let table = CostTable::default();
    let paid = |provider, usage| Generated {
        output: (),
        usage,
        model: ModelInfo::new(provider, "m"),
        prompt_version: "v",
    };
    assert_eq!(
        table.charge(
            CallKind::GenerateDrama,
            &paid(Provider::Gemini, Usage::default())
        ),
        10
    );
    assert_eq!(
        table.charge(
            CallKind::Image,
            &paid(
                Provider::NanoBanana,
                Usage {
                    images: 1,
                    ..Usage::default()
                }
            )
        ),
        4
    );
    assert_eq!(
        table.charge(
            CallKind::Video,
            &paid(
                Provider::Sora,
                Usage {
                    video_seconds: 15,
                    ..Usage::default()
                }
            )
        ),
        150
    );
    assert_eq!(
        table.charge(
            CallKind::Video,
            &paid(
                Provider::Offline,
                Usage {
                    video_seconds: 15,
                    ..Usage::default()
                }
            )
        ),
        0
    );
    assert_eq!(table.estimate(CallKind::Video, Provider::Sora, 10), 100);
    assert_eq!(
        table.estimate(CallKind::CritiqueDrama, Provider::Offline, 0),
        0
    );
    let sum = Usage {
        input_tokens: 1,
        requests: 1,
        ..Usage::default()
    } + Usage {
        input_tokens: 2,
        images: 1,
        ..Usage::default()
    };
    assert_eq!(
        sum,
        Usage {
            input_tokens: 3,
            images: 1,
            requests: 1,
            ..Usage::default()
        }
    );
}

#[test]
fn errors_are_classified_for_the_scheduler() {
    let refused = AiError::Refused {
        provider: Provider::Sora,
        reason: "policy".into(),
    };
    assert!(!refused.is_retryable());
    assert_eq!(refused.code(), "moderation_refusal");
    let schema = AiError::SchemaViolation {
        provider: Provider::Gemini,
        problems: vec!["characters is empty".into()],
    };
    assert!(!schema.is_retryable());
    assert!(schema.to_string().contains("characters is empty"));
    assert!(
        AiError::Server {
            provider: Provider::OpenAi,
            status: 502,
            message: String::new()
        }
        .is_retryable()
    );
    assert!(
        !AiError::UnknownModel {
            name: "x".into(),
            allowed: vec![]
        }
        .is_retryable()
    );
}
