//! PATCH models: only the fields the peer let clients change, and [`EntityPatch`], the one
//! value every layer passes for a PATCH of any part of a drama.
//!
//! A key that is absent leaves the field alone. A key that is present sets it; for a field the
//! model requires, `null` and empty text are refused (the peer accepted them and then could no
//! longer read the drama back).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::DomainError;
use crate::ids::{AssetId, CharacterId, EpisodeId, SceneId};
use crate::model::AssetOwner;

/// Present-and-null is an error for required fields.
fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Err(serde::de::Error::custom("must not be null")),
        Some(s) if s.trim().is_empty() => Err(serde::de::Error::custom("must not be empty")),
        Some(s) => Ok(Some(s)),
    }
}

/// Present-and-null clears a nullable field; absent (the `default`) leaves it alone.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

macro_rules! patch_parse {
    ($name:ident) => {
        impl $name {
            /// Parses a PATCH body.
            ///
            /// # Errors
            /// A [`DomainError`] naming the field that is null, empty or of the wrong type.
            pub fn from_json(json: &[u8]) -> Result<Self, DomainError> {
                Self::from_value(DomainError::parse_json(json)?)
            }

            /// Converts an already parsed PATCH body.
            ///
            /// # Errors
            /// As `from_json`.
            pub fn from_value(value: Value) -> Result<Self, DomainError> {
                if let Some(nul) = crate::text::find_nul(&value) {
                    return Err(DomainError { errors: vec![nul] });
                }
                DomainError::from_value(value)
            }
        }
    };
}

/// Changes to a drama's own fields.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct DramaPatch {
    /// New title (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 500, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub title: Option<String>,
    /// New logline (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 10000, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub description: Option<String>,
    /// New premise (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 20000, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub premise: Option<String>,
    /// New metadata (replaced wholesale; `null` clears it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, required = false))]
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Option<Option<Value>>,
}
patch_parse!(DramaPatch);

/// Changes to a character (gender, voice, `main` and `url` are not patchable, as in the peer).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct CharacterPatch {
    /// New name (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 500, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub name: Option<String>,
    /// New description (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 10000, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub description: Option<String>,
    /// New metadata.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, required = false))]
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Option<Option<Value>>,
}
patch_parse!(CharacterPatch);

/// Changes to an episode.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct EpisodePatch {
    /// New title (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 500, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub title: Option<String>,
    /// New description (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 10000, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub description: Option<String>,
    /// New premise (`null` clears it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = false, max_length = 20000))]
    #[serde(default, deserialize_with = "nullable")]
    pub premise: Option<Option<String>>,
    /// New metadata.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, required = false))]
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Option<Option<Value>>,
}
patch_parse!(EpisodePatch);

/// Changes to a scene.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ScenePatch {
    /// New description (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 10000, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub description: Option<String>,
    /// New storyboard url (`null` clears it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = false, max_length = 10000))]
    #[serde(default, deserialize_with = "nullable")]
    pub image_url: Option<Option<String>>,
    /// New clip url (`null` clears it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = false, max_length = 10000))]
    #[serde(default, deserialize_with = "nullable")]
    pub video_url: Option<Option<String>>,
    /// New metadata.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, required = false))]
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Option<Option<Value>>,
}
patch_parse!(ScenePatch);

/// Changes to an asset (kind, dependencies and duration are not patchable, as in the peer).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AssetPatch {
    /// New prompt (not blank).
    #[cfg_attr(feature = "openapi", schema(value_type = String, required = false, min_length = 1, max_length = 10000, pattern = r"\S"))]
    #[serde(default, deserialize_with = "required")]
    pub prompt: Option<String>,
    /// New url (`null` clears it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, required = false, max_length = 10000))]
    #[serde(default, deserialize_with = "nullable")]
    pub url: Option<Option<String>>,
    /// New metadata.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>, required = false))]
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Option<Option<Value>>,
}
patch_parse!(AssetPatch);

/// A PATCH of one part of a drama: which part, and the changes to its fields.
///
/// The address and the changes travel together so that a patch of one kind can never be
/// applied to a part of another; the drama itself (and its owner) are named beside it.
#[derive(Debug, Clone, PartialEq)]
pub enum EntityPatch {
    /// The drama's own fields.
    Drama(DramaPatch),
    /// One character.
    Character {
        /// The character.
        id: CharacterId,
        /// Its changes.
        changes: CharacterPatch,
    },
    /// One episode.
    Episode {
        /// The episode.
        id: EpisodeId,
        /// Its changes.
        changes: EpisodePatch,
    },
    /// One scene, addressed through its episode (a scene of another episode is not found).
    Scene {
        /// The episode the scene must be in.
        episode: EpisodeId,
        /// The scene.
        id: SceneId,
        /// Its changes.
        changes: ScenePatch,
    },
    /// One asset, addressed through the entity that holds it (an asset held by another entity
    /// is not found).
    Asset {
        /// The entity whose `assets` hold it.
        owner: AssetOwner,
        /// The asset.
        id: AssetId,
        /// Its changes.
        changes: AssetPatch,
    },
}

impl EntityPatch {
    /// Every media URL the patch sets (a scene's storyboard and clip, an asset's url), to be
    /// rewritten in place.
    pub fn media_urls_mut(&mut self) -> Vec<&mut String> {
        let urls: Vec<&mut Option<Option<String>>> = match self {
            Self::Scene { changes, .. } => vec![&mut changes.image_url, &mut changes.video_url],
            Self::Asset { changes, .. } => vec![&mut changes.url],
            Self::Drama(_) | Self::Character { .. } | Self::Episode { .. } => Vec::new(),
        };
        urls.into_iter()
            .filter_map(|url| url.as_mut().and_then(Option::as_mut))
            .collect()
    }

    /// The changes alone, as the JSON body they were read from (what text limits are checked
    /// against, so that a refusal names the body's field and not the address).
    ///
    /// # Errors
    /// Only if a metadata value cannot be serialised, which parsed JSON always can.
    pub fn changes_json(&self) -> Result<Value, serde_json::Error> {
        match self {
            Self::Drama(changes) => serde_json::to_value(changes),
            Self::Character { changes, .. } => serde_json::to_value(changes),
            Self::Episode { changes, .. } => serde_json::to_value(changes),
            Self::Scene { changes, .. } => serde_json::to_value(changes),
            Self::Asset { changes, .. } => serde_json::to_value(changes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_keeps_present_sets_null_clears() {
        let p = ScenePatch::from_json(br#"{"image_url": null, "description": "d"}"#).unwrap();
        assert_eq!(p.description.as_deref(), Some("d"));
        assert_eq!(p.image_url, Some(None));
        assert_eq!(p.video_url, None);
        assert_eq!(p.metadata, None);
    }

    #[test]
    fn null_for_a_required_field_names_it() {
        let e = DramaPatch::from_json(br#"{"title": null}"#).unwrap_err();
        assert_eq!(e.first_field(), "title");
        assert!(e.to_string().contains("must not be null"), "{e}");
        let e = CharacterPatch::from_json(br#"{"name": "  "}"#).unwrap_err();
        assert_eq!(e.first_field(), "name");
    }

    #[test]
    fn unknown_keys_are_ignored_and_wrong_types_named() {
        assert_eq!(
            AssetPatch::from_json(br#"{"kind": "video", "prompt": "p"}"#)
                .unwrap()
                .prompt
                .as_deref(),
            Some("p")
        );
        let e = EpisodePatch::from_json(br#"{"premise": 5}"#).unwrap_err();
        assert_eq!(e.first_field(), "premise");
        let e = ScenePatch::from_json(br#"{"metadata": {"note": "a\u0000b"}}"#).unwrap_err();
        assert_eq!(e.first_field(), "metadata.note");
    }

    #[test]
    fn changes_json_is_the_body_without_the_address() {
        let patch = EntityPatch::Scene {
            episode: EpisodeId::parse("e1").unwrap(),
            id: SceneId::parse("s1").unwrap(),
            changes: ScenePatch::from_json(br#"{"description": "d", "video_url": null}"#).unwrap(),
        };
        let json = patch.changes_json().unwrap();
        assert_eq!(json["description"], "d");
        assert!(
            json.get("id").is_none() && json.get("episode").is_none(),
            "{json}"
        );
    }
}
