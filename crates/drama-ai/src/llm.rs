//! A script model on top of any chat-style text backend: prompts, structured output,
//! validation and the one repair attempt.

use async_trait::async_trait;
use drama_domain::{Drama, DramaId, EpisodeId, Scene};
use serde_json::Value;

use crate::error::AiError;
use crate::json::{self, JsonShape};
use crate::lite;
use crate::prompts::{self, PROMPT_VERSION};
use crate::traits::{DramaRequest, ScriptModel};
use crate::types::ReferenceImage;
use crate::usage::{Generated, ModelInfo, Usage};
use crate::validate::{self, EpisodeCount};

/// Who speaks a turn of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    User,
    Model,
}

/// One turn.
#[derive(Debug, Clone)]
pub(crate) struct Turn {
    pub role: Role,
    pub text: String,
}

/// One request to a text model.
#[derive(Debug, Clone)]
pub(crate) struct TextCall {
    pub system: String,
    /// Alternating turns, starting and ending with the user.
    pub turns: Vec<Turn>,
    /// Attached to the first user turn.
    pub images: Vec<ReferenceImage>,
    /// Schema name and JSON Schema for structured output; `None` for prose.
    pub schema: Option<(&'static str, Value)>,
}

/// How the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finish {
    Complete,
    /// Cut off by the output limit; the reason as the provider words it.
    Truncated(String),
}

/// A model's answer.
#[derive(Debug, Clone)]
pub(crate) struct TextAnswer {
    pub text: String,
    pub finish: Finish,
    pub usage: Usage,
}

/// A provider that answers [`TextCall`]s (retries and refusals handled inside).
#[async_trait]
pub(crate) trait TextBackend: Send + Sync {
    fn model(&self) -> ModelInfo;
    async fn complete(&self, call: &TextCall) -> Result<TextAnswer, AiError>;
}

/// [`ScriptModel`] over a [`TextBackend`].
pub(crate) struct LlmScript<B> {
    pub backend: B,
}

enum Problem {
    Truncated(String),
    Invalid(Vec<String>),
}

fn interpret<T>(
    answer: &TextAnswer,
    parse: &dyn Fn(&str) -> Result<T, Vec<String>>,
) -> Result<T, Problem> {
    if let Finish::Truncated(reason) = &answer.finish {
        return Err(Problem::Truncated(reason.clone()));
    }
    match json::extract(&answer.text) {
        JsonShape::Complete(body) => parse(&body).map_err(Problem::Invalid),
        JsonShape::Unbalanced => Err(Problem::Truncated("unbalanced JSON".to_owned())),
        JsonShape::Missing => Err(Problem::Invalid(vec![
            "the answer contains no JSON object".to_owned(),
        ])),
    }
}

impl<B: TextBackend> LlmScript<B> {
    /// Asks, checks, and on a problem asks once more with the problem spelled out.
    async fn structured<T>(
        &self,
        mut call: TextCall,
        parse: &(dyn Fn(&str) -> Result<T, Vec<String>> + Sync),
    ) -> Result<(T, Usage), AiError> {
        let provider = self.backend.model().provider;
        let first = self.backend.complete(&call).await?;
        let mut usage = first.usage;
        let repair = match interpret(&first, parse) {
            Ok(v) => return Ok((v, usage)),
            Err(Problem::Truncated(reason)) => {
                tracing::warn!(%reason, "answer cut off; asking for a shorter one");
                prompts::REPAIR_TRUNCATED.to_owned()
            }
            Err(Problem::Invalid(problems)) => {
                tracing::warn!(?problems, "answer breaks the rules; asking for a repair");
                call.turns.push(Turn {
                    role: Role::Model,
                    text: first.text.clone(),
                });
                prompts::repair(&problems)
            }
        };
        call.turns.push(Turn {
            role: Role::User,
            text: repair,
        });
        let second = self.backend.complete(&call).await?;
        usage += second.usage;
        match interpret(&second, parse) {
            Ok(v) => Ok((v, usage)),
            Err(Problem::Truncated(reason)) => Err(AiError::Truncated { provider, reason }),
            Err(Problem::Invalid(problems)) => Err(AiError::SchemaViolation { provider, problems }),
        }
    }

    fn generated<T>(&self, output: T, usage: Usage) -> Generated<T> {
        Generated {
            output,
            usage,
            model: self.backend.model(),
            prompt_version: PROMPT_VERSION,
        }
    }
}

fn user(text: String) -> Vec<Turn> {
    vec![Turn {
        role: Role::User,
        text,
    }]
}

#[async_trait]
impl<B: TextBackend> ScriptModel for LlmScript<B> {
    fn model(&self) -> ModelInfo {
        self.backend.model()
    }

    #[tracing::instrument(skip_all, fields(provider = %self.backend.model().provider, drama_id = %request.drama_id))]
    async fn generate_drama(&self, request: &DramaRequest) -> Result<Generated<Drama>, AiError> {
        if request.premise.trim().is_empty() {
            return Err(AiError::InvalidRequest("the premise is empty".to_owned()));
        }
        let episodes =
            EpisodeCount::from_texts(&[&request.premise]).map_err(AiError::InvalidRequest)?;
        let call = TextCall {
            system: prompts::drama_system(episodes),
            turns: user(prompts::drama_user(
                &request.premise,
                episodes,
                request.references.len(),
            )),
            images: request.references.clone(),
            schema: Some((lite::DRAMA_SCHEMA_NAME, lite::drama_schema())),
        };
        let parse = |text: &str| {
            validate::drama_from_json(text, &request.drama_id, &request.premise, episodes)
        };
        let (drama, usage) = self.structured(call, &parse).await?;
        Ok(self.generated(drama, usage))
    }

    #[tracing::instrument(skip_all, fields(provider = %self.backend.model().provider, drama_id = %drama.id, new_id = %new_id))]
    async fn improve_drama(
        &self,
        drama: &Drama,
        feedback: &str,
        new_id: &DramaId,
    ) -> Result<Generated<Drama>, AiError> {
        let episodes = EpisodeCount::for_improvement(drama, feedback)?;
        let call = TextCall {
            system: prompts::improve_system(episodes),
            turns: user(prompts::improve_user(drama, feedback)),
            images: Vec::new(),
            schema: Some((lite::DRAMA_SCHEMA_NAME, lite::drama_schema())),
        };
        let parse = |text: &str| validate::drama_from_json(text, new_id, &drama.premise, episodes);
        let (improved, usage) = self.structured(call, &parse).await?;
        Ok(self.generated(improved, usage))
    }

    #[tracing::instrument(skip_all, fields(provider = %self.backend.model().provider, drama_id = %drama.id))]
    async fn critique_drama(&self, drama: &Drama) -> Result<Generated<String>, AiError> {
        let call = TextCall {
            system: prompts::CRITIQUE_SYSTEM.to_owned(),
            turns: user(prompts::critique_user(drama)),
            images: Vec::new(),
            schema: None,
        };
        let answer = self.backend.complete(&call).await?;
        let mut text = answer.text.trim().to_owned();
        if let Finish::Truncated(reason) = &answer.finish {
            tracing::warn!(%reason, "critique cut off");
            text.push_str(" …");
        }
        if text.is_empty() {
            return Err(AiError::InvalidResponse {
                provider: self.backend.model().provider,
                message: "the critique is empty".to_owned(),
            });
        }
        Ok(self.generated(text, answer.usage))
    }

    #[tracing::instrument(skip_all, fields(provider = %self.backend.model().provider, drama_id = %drama.id, episode_id = %episode_id))]
    async fn write_episode_scenes(
        &self,
        drama: &Drama,
        episode_id: &EpisodeId,
    ) -> Result<Generated<Vec<Scene>>, AiError> {
        let episode = drama.episode(episode_id.as_str()).ok_or_else(|| {
            AiError::InvalidRequest(format!("drama {} has no episode {episode_id}", drama.id))
        })?;
        let call = TextCall {
            system: prompts::SCENES_SYSTEM.to_owned(),
            turns: user(prompts::scenes_user(drama, episode)),
            images: Vec::new(),
            schema: Some((lite::SCENES_SCHEMA_NAME, lite::scenes_schema())),
        };
        let parse = |text: &str| validate::scenes_from_json(text, drama, episode_id);
        let (scenes, usage) = self.structured(call, &parse).await?;
        Ok(self.generated(scenes, usage))
    }
}
