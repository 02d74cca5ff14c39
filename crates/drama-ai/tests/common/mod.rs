#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::sync::Arc;

use drama_ai::{
    AiError, AiProviders, AiSettings, ApiKey, DramaRequest, Generated, ImageKind, ImageRequest,
    OfflineProvider, ScriptModel,
};
use drama_domain::{Drama, DramaId};
use serde_json::{Value, json};
use wiremock::matchers;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Answers POSTs to `at` with `answer`: the first `times` of them, or all.
pub async fn reply(server: &MockServer, at: &str, answer: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(matchers::method("POST"))
        .and(matchers::path(at))
        .respond_with(answer);
    match times {
        Some(n) => mock.up_to_n_times(n),
        None => mock,
    }
    .mount(server)
    .await;
}

/// The JSON bodies `server` received, in order.
pub async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.body_json::<Value>().unwrap())
        .collect()
}

/// How many requests `server` received.
pub async fn request_count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// A drama request for the id `d1`.
pub fn request(premise: &str) -> DramaRequest {
    DramaRequest::new(DramaId::parse("d1").unwrap(), premise)
}

/// A drama from `premise` by `model`, with every provider at `server`.
pub async fn generate_drama(
    server: &MockServer,
    model: Option<&str>,
    premise: &str,
) -> Result<Generated<Drama>, AiError> {
    generate_drama_with(&settings(server), model, premise).await
}

/// A drama from `premise` by `model`, with the providers `settings` make.
pub async fn generate_drama_with(
    settings: &AiSettings,
    model: Option<&str>,
    premise: &str,
) -> Result<Generated<Drama>, AiError> {
    providers(settings)
        .script_model(model)
        .unwrap()
        .generate_drama(&request(premise))
        .await
}

/// The script model `name` (the default for `None`) with every provider at `server`.
pub fn script_model_at(server: &MockServer, name: Option<&str>) -> Arc<dyn ScriptModel> {
    providers_at(server).script_model(name).unwrap()
}

/// The drama `model` writes from `premise`, without what it cost.
pub async fn drama_written_by(model: &dyn ScriptModel, premise: &str) -> Drama {
    model
        .generate_drama(&request(premise))
        .await
        .unwrap()
        .output
}

/// The error `model` ends with, at `server`, when every answer at `at` is `answer`.
pub async fn drama_error_when_every_answer_is(
    server: &MockServer,
    at: &str,
    model: Option<&str>,
    answer: ResponseTemplate,
) -> AiError {
    reply(server, at, answer, None).await;
    generate_drama(server, model, "x").await.unwrap_err()
}

/// `err` is permanent, and the request that met it was the only one `server` received.
pub async fn assert_permanent_and_not_retried(server: &MockServer, err: &AiError) {
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(request_count(server).await, 1, "{err:?} was retried");
}

/// Some problem in `problems` says `text`.
pub fn assert_some_problem_says(problems: &[String], text: &str) {
    assert!(problems.iter().any(|p| p.contains(text)), "{problems:?}");
}

/// The providers `settings` make.
pub fn providers(settings: &AiSettings) -> AiProviders {
    AiProviders::from_settings(settings).unwrap()
}

/// The providers with every one at `server`, with fast retries.
pub fn providers_at(server: &MockServer) -> AiProviders {
    providers(&settings(server))
}

/// [`settings`] with no retries: the first failure is the answer.
pub fn settings_without_retries(server: &MockServer) -> AiSettings {
    AiSettings {
        max_retries: 0,
        ..settings(server)
    }
}

/// Settings pointing every provider at `server`, with fast retries.
pub fn settings(server: &MockServer) -> AiSettings {
    let base = server.uri();
    AiSettings {
        gemini_api_key: Some(ApiKey::new("gem-key")),
        gemini_api_base: base.clone(),
        openai_api_key: Some(ApiKey::new("oa-key")),
        openai_api_base: format!("{base}/v1"),
        nano_banana_api_key: Some(ApiKey::new("nb-key")),
        nano_banana_api_base: base.clone(),
        sora_api_key: Some(ApiKey::new("sora-key")),
        sora_api_base: base,
        max_retries: 2,
        retry_base_delay_ms: 1,
        retry_max_delay_ms: 5,
        text_timeout_secs: 10,
        image_timeout_secs: 10,
        video_request_timeout_secs: 10,
        video_poll_interval_ms: 20,
        video_deadline_secs: 5,
        // The mock server is plain http on 127.0.0.1.
        download_allow_local: true,
        ..AiSettings::default()
    }
}

pub fn character(id: &str, name: &str, main: bool) -> Value {
    json!({
        "id": id, "name": name, "description": format!("{name}, tall, in a red coat"),
        "gender": "female", "voice_description": "low, measured, dry", "main": main, "premise_url": null
    })
}

pub fn episode(id: &str) -> Value {
    json!({"id": id, "title": format!("Title {id}"), "description": format!("Arc of {id}")})
}

/// A valid drama answer with `episodes` episodes.
pub fn drama_json(episodes: usize) -> Value {
    let episodes: Vec<Value> = (1..=episodes).map(|i| episode(&format!("ep{i}"))).collect();
    json!({
        "title": "The Corgi CEO",
        "description": "A corgi runs a rocket company.",
        "characters": [character("char-mara", "Mara", true), character("char-leo", "Leo", false)],
        "episodes": episodes
    })
}

/// A valid scenes answer for episode `ep` of a drama written from [`drama_json`].
pub fn scenes_json(ep: &str) -> Value {
    let scenes: Vec<Value> = [1, 2, 3].iter().map(|n| json!({
        "id": format!("{ep}-s{n}"),
        "description": format!("Scene {n}: Mara argues."),
        "storyboard": {"id": format!("{ep}-s{n}-storyboard"), "prompt": "Wide shot, Mara left.", "character_ids": ["char-mara", "char-leo"]},
        "clip": {"id": format!("{ep}-s{n}-clip"), "prompt": "Slow push-in.", "duration": if *n == 2 { 15 } else { 10 }}
    })).collect();
    json!({"scenes": scenes})
}

/// A Gemini `generateContent` answer carrying `text`.
pub fn gemini_answer(text: &str, finish: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "thinking about it", "thought": true},
                {"text": text}
            ]},
            "finishReason": finish,
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 80, "thoughtsTokenCount": 20, "totalTokenCount": 220},
        "modelVersion": "gemini-3-pro-preview"
    })
}

/// An OpenAI chat completion answer.
pub fn openai_answer(content: Option<&str>, refusal: Option<&str>, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": "gpt-5.1",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": finish
        }],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
    })
}

/// A small real PNG (an offline portrait).
pub fn png(label: &str) -> Vec<u8> {
    OfflineProvider::new(1)
        .draw_image(&ImageRequest {
            kind: ImageKind::Portrait,
            prompt: format!("{label} portrait"),
            label: label.to_owned(),
            references: Vec::new(),
        })
        .unwrap()
        .bytes
        .to_vec()
}

/// Walks ISO-BMFF boxes: (type, payload range) at one level.
/// A box type and the byte range of its payload.
pub type BoxSpan = ([u8; 4], std::ops::Range<usize>);

pub fn boxes(data: &[u8]) -> Result<Vec<BoxSpan>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if at + 8 > data.len() {
            return Err(format!("box header cut at {at}"));
        }
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().unwrap();
        if size < 8 || at + size > data.len() {
            return Err(format!(
                "box {} at {at} has size {size}, file has {} bytes",
                String::from_utf8_lossy(&kind),
                data.len()
            ));
        }
        out.push((kind, at + 8..at + size));
        at += size;
    }
    Ok(out)
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], String> {
    boxes(data)?
        .into_iter()
        .find(|(k, _)| k == kind)
        .map(|(_, r)| &data[r])
        .ok_or_else(|| format!("missing box {}", String::from_utf8_lossy(kind)))
}

fn path<'a>(data: &'a [u8], kinds: &[&[u8; 4]]) -> Result<&'a [u8], String> {
    kinds.iter().try_fold(data, |d, k| child(d, k))
}

fn be32(d: &[u8], at: usize) -> usize {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap()) as usize
}

/// What the structural check learned about an MP4.
#[derive(Debug, PartialEq)]
pub struct Mp4Facts {
    pub brand: String,
    pub width: u32,
    pub height: u32,
    pub samples: usize,
    pub seconds: f64,
    pub first_nal_type: u8,
    pub sync_samples: usize,
}

/// Checks an H.264 MP4 without any decoder: box tree, sample tables against `mdat`, NAL
/// lengths inside every sample, SPS dimensions, first sample an IDR picture.
pub fn check_mp4(data: &[u8]) -> Result<Mp4Facts, String> {
    let top = boxes(data)?;
    let (first, ftyp) = top.first().ok_or("empty file")?;
    if first != b"ftyp" {
        return Err("the first box is not ftyp".into());
    }
    let brand = String::from_utf8_lossy(&data[ftyp.start..ftyp.start + 4]).into_owned();
    let moov = child(data, b"moov")?;
    let mdat = top
        .iter()
        .find(|(k, _)| k == b"mdat")
        .map(|(_, r)| r.clone())
        .ok_or("missing mdat")?;
    let mdhd = path(moov, &[b"trak", b"mdia", b"mdhd"])?;
    let timescale = be32(mdhd, 12) as f64;
    let duration = be32(mdhd, 16) as f64;
    let stbl = path(moov, &[b"trak", b"mdia", b"minf", b"stbl"])?;
    let stsd = child(stbl, b"stsd")?;
    let avc1 = child(&stsd[8..], b"avc1")?;
    let avcc = child(&avc1[78..], b"avcC")?;
    let sps_len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
    let sps = &avcc[8..8 + sps_len];
    let (width, height) = sps_dimensions(sps)?;
    let stsz = child(stbl, b"stsz")?;
    let count = be32(stsz, 8);
    let sizes: Vec<usize> = (0..count).map(|i| be32(stsz, 12 + 4 * i)).collect();
    let stts = child(stbl, b"stts")?;
    let stts_total: usize = (0..be32(stts, 4)).map(|i| be32(stts, 8 + 8 * i)).sum();
    if stts_total != count {
        return Err(format!(
            "stts covers {stts_total} samples, stsz lists {count}"
        ));
    }
    let stco = child(stbl, b"stco")?;
    if be32(stco, 4) != 1 {
        return Err("expected one chunk".into());
    }
    let offset = be32(stco, 8);
    let total: usize = sizes.iter().sum();
    if offset != mdat.start || offset + total != mdat.end {
        return Err(format!(
            "samples span {offset}..{} but mdat holds {:?}",
            offset + total,
            mdat
        ));
    }
    let mut at = offset;
    let mut first_nal_type = 0;
    for (i, size) in sizes.iter().enumerate() {
        let end = at + size;
        let mut nal_at = at;
        while nal_at < end {
            let len = be32(data, nal_at);
            if nal_at + 4 + len > end || len == 0 {
                return Err(format!("sample {i}: NAL length {len} overruns the sample"));
            }
            if i == 0 && nal_at == at {
                first_nal_type = data[nal_at + 4] & 0x1F;
            }
            nal_at += 4 + len;
        }
        at = end;
    }
    let stss = child(stbl, b"stss")?;
    Ok(Mp4Facts {
        brand,
        width,
        height,
        samples: count,
        seconds: duration / timescale,
        first_nal_type,
        sync_samples: be32(stss, 4),
    })
}

struct Bits<'a> {
    data: Vec<u8>,
    at: usize,
    _p: std::marker::PhantomData<&'a ()>,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, String> {
        let byte = self.data.get(self.at / 8).ok_or("SPS ends early")?;
        let b = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Ok(u32::from(b))
    }
    fn bits(&mut self, n: u32) -> Result<u32, String> {
        (0..n).try_fold(0, |acc, _| Ok((acc << 1) | self.bit()?))
    }
    fn ue(&mut self) -> Result<u32, String> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("bad Exp-Golomb code".into());
            }
        }
        Ok((1 << zeros) - 1 + self.bits(zeros)?)
    }
}

/// Width and height from a Baseline SPS NAL unit (header byte included).
pub fn sps_dimensions(sps: &[u8]) -> Result<(u32, u32), String> {
    if sps.first().map(|b| b & 0x1F) != Some(7) {
        return Err("not an SPS".into());
    }
    // Undo emulation prevention.
    let mut rbsp = Vec::new();
    let mut zeros = 0;
    for &b in &sps[1..] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        rbsp.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    let mut r = Bits {
        data: rbsp,
        at: 0,
        _p: std::marker::PhantomData,
    };
    let profile = r.bits(8)?;
    if profile != 66 {
        return Err(format!("profile {profile}, expected Baseline (66)"));
    }
    r.bits(16)?; // constraints, level
    r.ue()?; // sps id
    r.ue()?; // log2_max_frame_num_minus4
    let poc_type = r.ue()?;
    if poc_type != 2 {
        return Err(format!("pic_order_cnt_type {poc_type}"));
    }
    r.ue()?; // max refs
    r.bit()?; // gaps
    let w = r.ue()? + 1;
    let h = r.ue()? + 1;
    Ok((w * 16, h * 16))
}

/// ffprobe's view of a file, when ffprobe is installed.
pub fn ffprobe(path: &std::path::Path) -> Option<Result<String, String>> {
    let output = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,nb_frames:format=duration",
            "-of",
            "compact",
        ])
        .arg(path)
        .output()
        .ok()?;
    Some(if output.status.success() && output.stderr.is_empty() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    })
}
