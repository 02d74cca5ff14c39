//! The offline provider: deterministic scripts, PNG images, H.264 MP4 clips and WAV speech,
//! made locally with no network and no key.

mod calls;
mod h264;
mod mp4;
mod raster;
pub(crate) mod script;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use drama_domain::{Drama, DramaId, EpisodeId, Scene};

use crate::error::{AiError, Provider};
use crate::prompts::PROMPT_VERSION;
use crate::traits::{DramaRequest, ImageModel, ScriptModel, VideoModel, VideoPolling, VoiceModel};
use crate::types::{
    GeneratedAudio, GeneratedImage, GeneratedVideo, ImageKind, ImageRequest, ReferenceImage,
    VideoOutput, VideoRequest, VideoStatus, VideoTask, VoiceRequest,
};
use crate::usage::{Generated, ModelInfo, Usage};
use crate::validate::{self, EpisodeCount};
pub use calls::OfflineCalls;
use calls::{Call, CallCounter};
use raster::{Canvas, Rgb};
use script::Rng;

/// The model name of the offline provider.
pub const OFFLINE_MODEL: &str = "offline";
/// Width and height of offline images (9:16).
pub const OFFLINE_IMAGE_SIZE: (u32, u32) = (720, 1280);
/// Width and height of offline clips (9:16).
pub const OFFLINE_VIDEO_SIZE: (u32, u32) = (288, 512);
/// Frames per second of offline clips.
pub const OFFLINE_VIDEO_FPS: u32 = 24;
/// `tEXt` keyword under which an offline image records its main colour, so a storyboard drawn
/// from a portrait reference wears the same colour.
pub const COLOUR_KEY: &str = "drama-ai:colour";

/// Submitted offline video tasks kept for polling (oldest dropped first).
const MAX_TASKS: usize = 64;

/// Deterministic for a given seed and input; no network; fast.
pub struct OfflineProvider {
    seed: u64,
    latency: OfflineLatency,
    tasks: Mutex<TaskStore>,
    calls: CallCounter,
}

/// How long offline calls pretend to take, so load tests and demos see the waits a real
/// provider has (an image in seconds, a clip in minutes) without paying for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfflineLatency {
    /// Added to every image.
    pub image: std::time::Duration,
    /// Between submitting a clip and its task reporting done.
    pub video: std::time::Duration,
}

#[derive(Default)]
struct TaskStore {
    order: VecDeque<String>,
    videos: HashMap<String, (Bytes, std::time::Instant)>,
}

impl std::fmt::Debug for OfflineProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineProvider")
            .field("seed", &self.seed)
            .field("latency", &self.latency)
            .finish()
    }
}

impl OfflineProvider {
    /// A provider whose output depends only on `seed` and the inputs.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            latency: OfflineLatency::default(),
            tasks: Mutex::new(TaskStore::default()),
            calls: CallCounter::default(),
        }
    }

    /// The calls this provider answered so far, by kind.
    pub fn calls(&self) -> OfflineCalls {
        self.calls.snapshot()
    }

    /// The same provider, taking this long per image and per clip.
    #[must_use]
    pub fn with_latency(mut self, latency: OfflineLatency) -> Self {
        self.latency = latency;
        self
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn info() -> ModelInfo {
        ModelInfo::new(Provider::Offline, OFFLINE_MODEL)
    }

    /// What a script call of the offline provider reports: a request each, and about four
    /// bytes of text per token in and out, like the providers it stands in for. Deterministic,
    /// so that tests can see a call priced by its tokens.
    fn script_usage(input: &[&str], output: &impl serde::Serialize) -> Usage {
        let bytes_in: usize = input.iter().map(|t| t.len()).sum();
        let bytes_out = serde_json::to_string(output).map_or(0, |s| s.len());
        let tokens = |bytes: usize| u64::try_from(bytes.div_ceil(4)).unwrap_or(u64::MAX);
        Usage {
            input_tokens: tokens(bytes_in),
            output_tokens: tokens(bytes_out),
            requests: 1,
            ..Usage::default()
        }
    }

    fn generated<T>(output: T, usage: Usage) -> Generated<T> {
        Generated {
            output,
            usage,
            model: Self::info(),
            prompt_version: PROMPT_VERSION,
        }
    }

    /// Draws an image synchronously (what [`ImageModel::generate_image`] returns).
    ///
    /// # Errors
    /// [`AiError::InvalidRequest`] for an empty prompt; [`AiError::InvalidResponse`] if PNG
    /// encoding fails.
    pub fn draw_image(&self, request: &ImageRequest) -> Result<GeneratedImage, AiError> {
        if request.prompt.trim().is_empty() {
            return Err(AiError::InvalidRequest(
                "the image prompt is empty".to_owned(),
            ));
        }
        let (canvas, colour) = draw(self.seed, request);
        let png = canvas
            .to_png(&[
                (COLOUR_KEY, colour.hex()),
                ("Title", crate::error::shorten(&request.label, 70)),
                ("Software", "drama-server offline provider".to_owned()),
            ])
            .map_err(|e| AiError::InvalidResponse {
                provider: Provider::Offline,
                message: format!("PNG encoding failed: {e}"),
            })?;
        Ok(GeneratedImage {
            bytes: Bytes::from(png),
            mime_type: "image/png".to_owned(),
        })
    }

    /// Renders a clip synchronously (an MP4 of H.264 frames).
    pub fn render_video(&self, request: &VideoRequest) -> GeneratedVideo {
        GeneratedVideo {
            bytes: Bytes::from(render_clip(self.seed, request)),
            mime_type: "video/mp4".to_owned(),
        }
    }

    fn task_id(&self, request: &VideoRequest) -> String {
        let reference = request.reference.as_ref();
        let mut rng = Rng::from_parts(
            self.seed,
            &[
                "video",
                &request.prompt,
                &request.label,
                &request.duration.seconds().to_string(),
                &reference.map_or(String::new(), |r| {
                    format!("{}:{}", r.mime_type, r.bytes.len())
                }),
            ],
        );
        let mut h = rng.next();
        if let Some(r) = reference {
            for chunk in r.bytes.chunks(4096) {
                h = h.rotate_left(5)
                    ^ Rng::from_parts(h, &[&String::from_utf8_lossy(chunk)]).next();
            }
        }
        format!("offline-{h:016x}")
    }
}

fn hue_of(seed: u64, text: &str) -> f32 {
    Rng::from_parts(seed, &["hue", text]).unit() * 360.0
}

/// The main colour a reference image carries (its recorded colour, or one derived from its bytes).
fn reference_colour(seed: u64, reference: &ReferenceImage) -> Rgb {
    raster::png_text(&reference.bytes, COLOUR_KEY)
        .and_then(|hex| Rgb::parse_hex(&hex))
        .unwrap_or_else(|| {
            let sample = &reference.bytes[..reference.bytes.len().min(4096)];
            Rgb::hsv(hue_of(seed, &String::from_utf8_lossy(sample)), 0.65, 0.85)
        })
}

fn draw(seed: u64, request: &ImageRequest) -> (Canvas, Rgb) {
    let (w, h) = (OFFLINE_IMAGE_SIZE.0 as usize, OFFLINE_IMAGE_SIZE.1 as usize);
    let mut rng = Rng::from_parts(
        seed,
        &[
            "image",
            request.kind.as_str(),
            &request.label,
            &request.prompt,
        ],
    );
    let hue = hue_of(seed, &request.label);
    let top = Rgb::hsv(hue + 180.0, 0.35, 0.95);
    let bottom = Rgb::hsv(hue + 210.0, 0.55, 0.45);
    let mut canvas = Canvas::new(w, h, top);
    let skin_tones = [
        Rgb(241, 204, 170),
        Rgb(224, 172, 130),
        Rgb(176, 122, 86),
        Rgb(120, 80, 56),
    ];
    let hair_tones = [
        Rgb(30, 26, 24),
        Rgb(110, 60, 30),
        Rgb(200, 160, 90),
        Rgb(150, 150, 160),
    ];
    match request.kind {
        ImageKind::Portrait => {
            let body = Rgb::hsv(hue, 0.65, 0.85);
            canvas.vertical_gradient(0, h, top, bottom);
            let band = Rgb(25, 25, 35);
            canvas.rect(0, 0, 720, 110, band);
            canvas.paragraph(20, 35, 680, 5, 1, "PORTRAIT", band.ink(), true);
            canvas.figure(
                360,
                1010,
                800,
                body,
                skin_tones[rng.below(4)],
                hair_tones[rng.below(4)],
            );
            canvas.rect(0, 1010, 720, 270, band);
            let y = canvas.paragraph(
                20,
                1030,
                680,
                5,
                2,
                &request.label,
                Rgb(255, 255, 255),
                true,
            );
            canvas.paragraph(
                24,
                y + 10,
                672,
                2,
                6,
                &request.prompt,
                Rgb(220, 220, 230),
                false,
            );
            (canvas, body)
        }
        ImageKind::Storyboard => {
            canvas.vertical_gradient(0, 780, top, top.mix(bottom, 0.5));
            canvas.vertical_gradient(
                780,
                h,
                bottom.mix(Rgb(0, 0, 0), 0.2),
                bottom.mix(Rgb(0, 0, 0), 0.6),
            );
            let sun = Rgb::hsv(hue + 40.0, 0.6, 1.0);
            canvas.ellipse(
                560 - i64::try_from(rng.below(400)).unwrap_or(0),
                180,
                70,
                70,
                sun,
            );
            let colours: Vec<Rgb> = if request.references.is_empty() {
                vec![Rgb::hsv(hue + 90.0, 0.6, 0.8)]
            } else {
                request
                    .references
                    .iter()
                    .map(|r| reference_colour(seed, r))
                    .collect()
            };
            let n = i64::try_from(colours.len()).unwrap_or(1);
            for (i, colour) in colours.iter().enumerate() {
                let i = i64::try_from(i).unwrap_or(0);
                let cx = 720 * (2 * i + 1) / (2 * n);
                let height = if n > 2 { 480 } else { 580 };
                canvas.figure(
                    cx,
                    930,
                    height,
                    *colour,
                    skin_tones[rng.below(4)],
                    hair_tones[rng.below(4)],
                );
            }
            let band = Rgb(20, 20, 28);
            canvas.rect(0, 0, 720, 100, band);
            canvas.paragraph(
                20,
                30,
                680,
                4,
                1,
                &format!("SCENE {}", request.label),
                band.ink(),
                true,
            );
            canvas.rect(0, 950, 720, 330, band);
            canvas.paragraph(
                24,
                975,
                672,
                3,
                9,
                &request.prompt,
                Rgb(240, 240, 240),
                false,
            );
            (canvas, Rgb::hsv(hue, 0.65, 0.85))
        }
        ImageKind::Cover => {
            let rich_top = Rgb::hsv(hue, 0.75, 0.55);
            let rich_bottom = Rgb::hsv(hue + 40.0, 0.85, 0.2);
            canvas.vertical_gradient(0, h, rich_top, rich_bottom);
            let y = canvas.paragraph(
                20,
                80,
                680,
                7,
                4,
                &request.label.to_uppercase(),
                Rgb(255, 244, 214),
                true,
            );
            canvas.rect(160, y + 10, 400, 6, Rgb::hsv(hue + 40.0, 0.7, 1.0));
            canvas.paragraph(
                40,
                y + 40,
                640,
                2,
                6,
                &request.prompt,
                Rgb(235, 235, 240),
                true,
            );
            let colours: Vec<Rgb> = request
                .references
                .iter()
                .map(|r| reference_colour(seed, r))
                .collect();
            let colours = if colours.is_empty() {
                vec![Rgb::hsv(hue + 180.0, 0.6, 0.9)]
            } else {
                colours
            };
            let n = i64::try_from(colours.len()).unwrap_or(1);
            for (i, colour) in colours.iter().enumerate() {
                let i = i64::try_from(i).unwrap_or(0);
                canvas.figure(
                    720 * (2 * i + 1) / (2 * n),
                    1240,
                    620,
                    *colour,
                    skin_tones[rng.below(4)],
                    hair_tones[rng.below(4)],
                );
            }
            canvas.paragraph(
                20,
                1250,
                680,
                2,
                1,
                "A DRAMA-SERVER ORIGINAL",
                Rgb(255, 255, 255),
                true,
            );
            (canvas, rich_top)
        }
    }
}

fn render_clip(seed: u64, request: &VideoRequest) -> Vec<u8> {
    let (w, h) = (OFFLINE_VIDEO_SIZE.0 as usize, OFFLINE_VIDEO_SIZE.1 as usize);
    let base = request
        .reference
        .as_ref()
        .and_then(|r| Canvas::from_png(&r.bytes))
        .unwrap_or_else(|| {
            draw(
                seed,
                &ImageRequest {
                    kind: ImageKind::Storyboard,
                    prompt: request.prompt.clone(),
                    label: request.label.clone(),
                    references: Vec::new(),
                },
            )
            .0
        })
        .resized(w, h);
    let seconds = request.duration.seconds();
    let frames = seconds * OFFLINE_VIDEO_FPS;
    let strip_top = h - 32;
    let accent = Rgb::hsv(hue_of(seed, &request.label), 0.7, 1.0);
    let mut encoder = h264::Encoder::new(w, h);
    let sps = encoder.sps();
    let pps = encoder.pps();
    let mut samples = Vec::with_capacity(frames as usize);
    let mut canvas = base.clone();
    let mut frame = h264::Yuv::from_rgb(w, h, &canvas.pixels);
    for f in 0..frames {
        // Only the bottom strip changes: a clock and a progress bar.
        canvas.rect(
            0,
            i64::try_from(strip_top).unwrap_or(0),
            288,
            32,
            Rgb(15, 15, 20),
        );
        let elapsed = f / OFFLINE_VIDEO_FPS;
        canvas.text(
            8,
            i64::try_from(strip_top).unwrap_or(0) + 4,
            1,
            &format!(
                "{elapsed:02}s / {seconds:02}s  {}",
                crate::error::shorten(&request.label, 16)
            ),
            Rgb(230, 230, 230),
        );
        let filled = i64::from(272 * f / (frames - 1).max(1));
        canvas.rect(
            8,
            i64::try_from(strip_top).unwrap_or(0) + 20,
            filled,
            6,
            accent,
        );
        frame.update_rows(&canvas.pixels, strip_top, h);
        let (nal, sync) = encoder.encode(&frame);
        let mut data = Vec::with_capacity(nal.len() + 4);
        data.extend_from_slice(&u32::try_from(nal.len()).unwrap_or(u32::MAX).to_be_bytes());
        data.extend_from_slice(&nal);
        samples.push(mp4::Sample { data, sync });
    }
    mp4::write(
        &mp4::Track {
            width: u16::try_from(w).unwrap_or(u16::MAX),
            height: u16::try_from(h).unwrap_or(u16::MAX),
            timescale: 12_288,
            frame_ticks: 12_288 / OFFLINE_VIDEO_FPS,
            sps: &sps,
            pps: &pps,
        },
        &samples,
    )
}

/// A 16 kHz mono 16-bit WAV: one tone per word, pitched by the voice description.
fn speak(text: &str, voice: &str) -> (Vec<u8>, u32) {
    const RATE: u32 = 16_000;
    let lower = voice.to_lowercase();
    let base = if lower.contains("deep") || lower.contains("low") {
        120.0
    } else if lower.contains("high") || lower.contains("bright") {
        260.0
    } else {
        180.0
    };
    let mut pcm: Vec<i16> = Vec::new();
    for word in text.split_whitespace().take(120) {
        let shift = f32::from(u8::try_from(word.len().min(12)).unwrap_or(12)) * 6.0;
        let tone = (RATE / 4) as usize;
        for i in 0..tone {
            #[allow(clippy::cast_precision_loss)]
            let t = i as f32 / RATE as f32;
            let envelope = (std::f32::consts::PI * i as f32 / tone as f32).sin();
            let s = (2.0 * std::f32::consts::PI * (base + shift) * t).sin() * envelope * 12_000.0;
            #[allow(clippy::cast_possible_truncation)]
            pcm.push(s as i16);
        }
        pcm.extend(std::iter::repeat_n(0, (RATE / 12) as usize));
    }
    if pcm.is_empty() {
        pcm.extend(std::iter::repeat_n(0, RATE as usize / 2));
    }
    let data_len = u32::try_from(pcm.len() * 2).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    let ms = u32::try_from(u64::from(data_len / 2) * 1000 / u64::from(RATE)).unwrap_or(u32::MAX);
    (out, ms)
}

#[async_trait]
impl ScriptModel for OfflineProvider {
    fn model(&self) -> ModelInfo {
        Self::info()
    }

    #[tracing::instrument(skip_all, fields(provider = "offline", drama_id = %request.drama_id))]
    async fn generate_drama(&self, request: &DramaRequest) -> Result<Generated<Drama>, AiError> {
        self.calls.count(Call::Script);
        if request.premise.trim().is_empty() {
            return Err(AiError::InvalidRequest("the premise is empty".to_owned()));
        }
        let episodes =
            EpisodeCount::from_texts(&[&request.premise]).map_err(AiError::InvalidRequest)?;
        let drama = script::drama(self.seed, &request.drama_id, &request.premise, episodes)
            .map_err(AiError::InvalidRequest)?;
        let usage = Self::script_usage(&[&request.premise], &drama);
        Ok(Self::generated(drama, usage))
    }

    #[tracing::instrument(skip_all, fields(provider = "offline", drama_id = %drama.id, new_id = %new_id))]
    async fn improve_drama(
        &self,
        drama: &Drama,
        feedback: &str,
        new_id: &DramaId,
    ) -> Result<Generated<Drama>, AiError> {
        self.calls.count(Call::Script);
        let episodes = EpisodeCount::for_improvement(drama, feedback)?;
        let improved = script::improve(self.seed, drama, feedback, new_id, episodes)
            .map_err(AiError::InvalidRequest)?;
        let original = serde_json::to_string(drama).unwrap_or_default();
        let usage = Self::script_usage(&[&original, feedback], &improved);
        Ok(Self::generated(improved, usage))
    }

    async fn critique_drama(&self, drama: &Drama) -> Result<Generated<String>, AiError> {
        self.calls.count(Call::Script);
        let critique = script::critique(drama);
        let original = serde_json::to_string(drama).unwrap_or_default();
        let usage = Self::script_usage(&[&original], &critique);
        Ok(Self::generated(critique, usage))
    }

    #[tracing::instrument(skip_all, fields(provider = "offline", drama_id = %drama.id, episode_id = %episode_id))]
    async fn write_episode_scenes(
        &self,
        drama: &Drama,
        episode_id: &EpisodeId,
    ) -> Result<Generated<Vec<Scene>>, AiError> {
        self.calls.count(Call::Script);
        let episode = drama.episode(episode_id.as_str()).ok_or_else(|| {
            AiError::InvalidRequest(format!("drama {} has no episode {episode_id}", drama.id))
        })?;
        let scenes = script::scenes(self.seed, drama, episode).map_err(AiError::InvalidRequest)?;
        validate::check_scenes(drama, episode_id, &scenes).map_err(|problems| {
            AiError::SchemaViolation {
                provider: Provider::Offline,
                problems,
            }
        })?;
        let original = serde_json::to_string(drama).unwrap_or_default();
        let usage = Self::script_usage(&[&original, episode_id.as_str()], &scenes);
        Ok(Self::generated(scenes, usage))
    }
}

#[async_trait]
impl ImageModel for OfflineProvider {
    fn model(&self) -> ModelInfo {
        Self::info()
    }

    fn max_references(&self) -> usize {
        drama_domain::STORYBOARD_MAX_CHARACTERS + 1
    }

    #[tracing::instrument(skip_all, fields(provider = "offline", kind = request.kind.as_str()))]
    async fn generate_image(
        &self,
        request: &ImageRequest,
    ) -> Result<Generated<GeneratedImage>, AiError> {
        self.calls.count(Call::Image);
        crate::types::check_image_request(request, self.max_references())?;
        if !self.latency.image.is_zero() {
            tokio::time::sleep(self.latency.image).await;
        }
        let image = self.draw_image(request)?;
        Ok(Self::generated(
            image,
            Usage {
                images: 1,
                ..Usage::default()
            },
        ))
    }
}

#[async_trait]
impl VideoModel for OfflineProvider {
    fn model(&self) -> ModelInfo {
        Self::info()
    }

    fn polling(&self) -> VideoPolling {
        VideoPolling {
            interval: (self.latency.video / 20).clamp(
                std::time::Duration::from_millis(10),
                std::time::Duration::from_secs(5),
            ),
            deadline: std::time::Duration::from_secs(60) + self.latency.video * 2,
        }
    }

    /// A task's id derives from its request and nothing is billed: a repeat is the same clip.
    fn submission_is_idempotent(&self) -> bool {
        true
    }

    #[tracing::instrument(skip_all, fields(provider = "offline", duration = request.duration.seconds()))]
    async fn submit(&self, request: &VideoRequest) -> Result<Generated<VideoTask>, AiError> {
        self.calls.count(Call::Video);
        if request.prompt.trim().is_empty() {
            return Err(AiError::InvalidRequest(
                "the video prompt is empty".to_owned(),
            ));
        }
        let task_id = self.task_id(request);
        let seed = self.seed;
        let owned = request.clone();
        let video = tokio::task::spawn_blocking(move || render_clip(seed, &owned))
            .await
            .map_err(|e| AiError::InvalidResponse {
                provider: Provider::Offline,
                message: format!("rendering stopped: {e}"),
            })?;
        {
            let mut tasks = self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let ready_at = std::time::Instant::now() + self.latency.video;
            if tasks
                .videos
                .insert(task_id.clone(), (Bytes::from(video), ready_at))
                .is_none()
            {
                tasks.order.push_back(task_id.clone());
            }
            while tasks.order.len() > MAX_TASKS {
                if let Some(old) = tasks.order.pop_front() {
                    tasks.videos.remove(&old);
                }
            }
        }
        Ok(Self::generated(
            VideoTask {
                task_id,
                duration: request.duration,
            },
            Usage {
                video_seconds: request.duration.seconds(),
                ..Usage::default()
            },
        ))
    }

    async fn poll(&self, task_id: &str) -> Result<VideoStatus, AiError> {
        let tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match tasks.videos.get(task_id) {
            Some((_, ready_at)) if *ready_at > std::time::Instant::now() => {
                let total = self.latency.video.as_secs_f64().max(f64::EPSILON);
                let left = ready_at
                    .saturating_duration_since(std::time::Instant::now())
                    .as_secs_f64();
                let done = (100.0 * (1.0 - left / total)).clamp(0.0, 99.0);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let progress = Some(done as u8);
                VideoStatus::Running { progress }
            }
            Some((bytes, _)) => VideoStatus::Done {
                output: VideoOutput::Bytes {
                    bytes: bytes.clone(),
                    mime_type: "video/mp4".to_owned(),
                },
            },
            None => VideoStatus::Failed {
                reason: format!(
                    "unknown offline task {task_id}: offline tasks live in the process that submitted them; submit again"
                ),
            },
        })
    }

    async fn download(&self, output: &VideoOutput) -> Result<GeneratedVideo, AiError> {
        match output {
            VideoOutput::Bytes { bytes, mime_type } => Ok(GeneratedVideo {
                bytes: bytes.clone(),
                mime_type: mime_type.clone(),
            }),
            VideoOutput::Url(url) => Err(AiError::InvalidRequest(format!(
                "the offline provider downloads nothing (asked for {url})"
            ))),
        }
    }
}

#[async_trait]
impl VoiceModel for OfflineProvider {
    fn model(&self) -> ModelInfo {
        Self::info()
    }

    async fn speak(&self, request: &VoiceRequest) -> Result<Generated<GeneratedAudio>, AiError> {
        self.calls.count(Call::Voice);
        if request.text.trim().is_empty() {
            return Err(AiError::InvalidRequest(
                "the line to speak is empty".to_owned(),
            ));
        }
        let (wav, duration_ms) = speak(&request.text, &request.voice_description);
        Ok(Self::generated(
            GeneratedAudio {
                bytes: Bytes::from(wav),
                mime_type: "audio/wav".to_owned(),
                duration_ms,
            },
            Usage {
                audio_seconds: duration_ms.div_ceil(1000),
                ..Usage::default()
            },
        ))
    }
}
