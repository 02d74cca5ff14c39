#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use drama_ai::{
    AiProviders, DramaRequest, ImageKind, ImageModel, ImageRequest, OfflineLatency,
    OfflineProvider, Provider, ReferenceImage, ScriptModel, VideoDuration, VideoModel,
    VideoRequest, VoiceModel, VoiceRequest, generate_video, sniff_mime, validate,
};
use drama_domain::{AssetKind, Drama, DramaId};

const PREMISE: &str = "A corgi who becomes the CEO of a rocket company must win back her best friend before the launch, in 5 episodes.";

async fn drama(provider: &OfflineProvider, premise: &str) -> Drama {
    provider
        .generate_drama(&DramaRequest::new(DramaId::parse("d1").unwrap(), premise))
        .await
        .unwrap()
        .output
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn request(kind: ImageKind, label: &str, references: Vec<ReferenceImage>) -> ImageRequest {
    ImageRequest {
        kind,
        prompt: format!("{label} under the launch tower"),
        label: label.into(),
        references,
    }
}

#[tokio::test]
async fn same_premise_and_seed_give_the_same_drama_and_bytes() {
    let a = OfflineProvider::new(42);
    let b = OfflineProvider::new(42);
    let other = OfflineProvider::new(43);
    let (da, db, dother) = (
        drama(&a, PREMISE).await,
        drama(&b, PREMISE).await,
        drama(&other, PREMISE).await,
    );
    assert_eq!(da, db);
    assert_ne!(da, dother, "the seed changes the drama");

    let ep = da.episodes[0].id.clone();
    let sa = a.write_episode_scenes(&da, &ep).await.unwrap().output;
    assert_eq!(sa, b.write_episode_scenes(&db, &ep).await.unwrap().output);

    let img = request(ImageKind::Portrait, "Mara", vec![]);
    let ia = a.generate_image(&img).await.unwrap().output;
    assert_eq!(ia, b.generate_image(&img).await.unwrap().output);
    assert_ne!(ia, other.generate_image(&img).await.unwrap().output);

    let clip = VideoRequest {
        prompt: "Push in.".into(),
        label: "ep1-s1".into(),
        reference: Some(ReferenceImage::new(ia.bytes.clone(), "image/png")),
        duration: VideoDuration::Ten,
    };
    let va = generate_video(&a, &clip).await.unwrap();
    let vb = generate_video(&b, &clip).await.unwrap();
    assert_eq!(va.output, vb.output);
    assert_eq!(va.model.provider, Provider::Offline);
    assert_eq!(va.usage.video_seconds, 10);
}

#[tokio::test]
async fn the_drama_uses_the_premise_and_honours_the_episode_count() {
    let provider = OfflineProvider::new(0);
    let d = drama(&provider, PREMISE).await;
    assert_eq!(d.episodes.len(), 5);
    assert_eq!(d.premise, PREMISE);
    d.validate().unwrap();
    let mains = d.characters.iter().filter(|c| c.main).count();
    assert!((1..=2).contains(&mains), "{mains} mains");
    assert!(
        d.characters
            .iter()
            .all(|c| !c.voice_description.is_empty() && !c.gender.is_empty())
    );
    let text = serde_json::to_string(&d).unwrap().to_lowercase();
    for word in ["corgi", "rocket", "launch"] {
        assert!(text.contains(word), "the drama never mentions {word}");
    }
    assert!(
        d.characters[0].description.contains("corgi"),
        "the animal lead is drawn as one: {}",
        d.characters[0].description
    );

    assert_eq!(
        drama(&provider, "A duel at dawn in three episodes.")
            .await
            .episodes
            .len(),
        3
    );
    assert_eq!(
        drama(&provider, "A young detective, 1 episode and 1 character.")
            .await
            .characters
            .len(),
        1
    );
    let free = drama(&provider, "Two chefs fall in love.")
        .await
        .episodes
        .len();
    assert!((2..=3).contains(&free), "{free}");
    let err = provider
        .generate_drama(&DramaRequest::new(
            DramaId::parse("d2").unwrap(),
            "An epic in 400 episodes",
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 30"), "{err}");
}

#[tokio::test]
async fn scenes_have_one_storyboard_and_one_clip_with_unique_ids() {
    let provider = OfflineProvider::new(5);
    let mut d = drama(&provider, PREMISE).await;
    for i in 0..d.episodes.len() {
        let id = d.episodes[i].id.clone();
        let scenes = provider.write_episode_scenes(&d, &id).await.unwrap().output;
        validate::check_scenes(&d, &id, &scenes).unwrap();
        for s in &scenes {
            assert_eq!(
                s.assets
                    .iter()
                    .filter(|a| a.kind == AssetKind::Image)
                    .count(),
                1
            );
            assert_eq!(
                s.assets
                    .iter()
                    .filter(|a| a.kind == AssetKind::Video)
                    .count(),
                1
            );
            assert!(s.assets[0].depends_on.len() <= 3 && !s.assets[0].depends_on.is_empty());
            assert_eq!(s.assets[1].depends_on, [s.assets[0].id.as_str()]);
        }
        d.episodes[i].scenes = scenes;
    }
    d.validate().unwrap();
    let ids: Vec<&str> = d.assets_with_owner().map(|(_, a)| a.id.as_str()).collect();
    assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len());
}

#[tokio::test]
async fn improve_and_critique_work_offline() {
    let provider = OfflineProvider::new(5);
    let d = drama(&provider, PREMISE).await;
    let improved = provider
        .improve_drama(
            &d,
            "Cut it to 2 episodes and raise the stakes.",
            &DramaId::parse("d1_improved_1").unwrap(),
        )
        .await
        .unwrap()
        .output;
    assert_eq!(improved.id.as_str(), "d1_improved_1");
    assert_eq!(improved.episodes.len(), 2);
    assert_eq!(improved.premise, d.premise);
    assert!(improved.description.contains("raise the stakes"));
    let critique = provider.critique_drama(&d).await.unwrap().output;
    assert!(
        critique.contains(&d.title) && critique.contains("5 episodes"),
        "{critique}"
    );
}

#[tokio::test]
async fn images_are_9_16_pngs_with_distinct_colours_and_text() {
    let provider = OfflineProvider::new(9);
    let mara = provider
        .generate_image(&request(ImageKind::Portrait, "Mara Vale", vec![]))
        .await
        .unwrap();
    let leo = provider
        .generate_image(&request(ImageKind::Portrait, "Leo Hart", vec![]))
        .await
        .unwrap();
    assert_eq!(mara.usage.images, 1);
    for image in [&mara.output, &leo.output] {
        assert_eq!(image.mime_type, "image/png");
        assert_eq!(sniff_mime(&image.bytes), Some("image/png"));
    }
    let (w, h, mara_px) = decode_png(&mara.output.bytes);
    assert_eq!((w, h), (720, 1280));
    let (_, _, leo_px) = decode_png(&leo.output.bytes);
    let at = |px: &[u8], x: usize, y: usize| px[(y * 720 + x) * 3..(y * 720 + x) * 3 + 3].to_vec();
    assert_ne!(
        at(&mara_px, 360, 800),
        at(&leo_px, 360, 800),
        "different characters, different colours"
    );
    // The caption band carries white glyph pixels and the dark band colour.
    let band: Vec<Vec<u8>> = (1030..1070)
        .flat_map(|y| (0..720).map(move |x| (x, y)))
        .map(|(x, y)| at(&mara_px, x, y))
        .collect();
    let ink = band
        .iter()
        .filter(|p| p.as_slice() == [255, 255, 255])
        .count();
    assert!(
        ink > 300 && ink < band.len() / 2,
        "{ink} text pixels in the name band"
    );

    let story = provider
        .generate_image(&request(
            ImageKind::Storyboard,
            "ep1-s1",
            vec![
                ReferenceImage::new(mara.output.bytes.clone(), "image/png"),
                ReferenceImage::new(leo.output.bytes.clone(), "image/png"),
            ],
        ))
        .await
        .unwrap();
    let (_, _, story_px) = decode_png(&story.output.bytes);
    // The portraits' body colours reappear in the storyboard: consistency by reference.
    let mara_body = at(&mara_px, 360, 800);
    assert!(
        story_px.chunks_exact(3).any(|p| p == mara_body.as_slice()),
        "storyboard lacks Mara's colour {mara_body:?}"
    );
    let cover = provider
        .generate_image(&request(ImageKind::Cover, "The Corgi CEO", vec![]))
        .await
        .unwrap();
    let (cw, ch, _) = decode_png(&cover.output.bytes);
    assert_eq!((cw, ch), (720, 1280));
    assert_ne!(cover.output.bytes, story.output.bytes);
}

#[tokio::test]
async fn clips_are_h264_mp4_files_of_the_requested_length() {
    let provider = OfflineProvider::new(9);
    let board = provider
        .generate_image(&request(ImageKind::Storyboard, "ep1-s1", vec![]))
        .await
        .unwrap()
        .output;
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (duration, seconds) in [(VideoDuration::Ten, 10.0), (VideoDuration::Fifteen, 15.0)] {
        let req = VideoRequest {
            prompt: "Push in.".into(),
            label: "ep1-s1".into(),
            reference: Some(ReferenceImage::new(board.bytes.clone(), "image/png")),
            duration,
        };
        let video = generate_video(&provider, &req).await.unwrap().output;
        assert_eq!(video.mime_type, "video/mp4");
        assert_eq!(sniff_mime(&video.bytes), Some("video/mp4"));
        let facts = common::check_mp4(&video.bytes).unwrap();
        assert_eq!(facts.brand, "isom");
        assert_eq!((facts.width, facts.height), (288, 512));
        assert_eq!(facts.samples, (seconds as usize) * 24);
        assert!((facts.seconds - seconds).abs() < 1e-9, "{}", facts.seconds);
        assert_eq!(facts.first_nal_type, 5, "the first frame is an IDR picture");
        assert_eq!(facts.sync_samples, 1);
        let file = dir.path().join(format!("clip{seconds}.mp4"));
        std::fs::write(&file, &video.bytes).unwrap();
        if let Some(probe) = common::ffprobe(&file) {
            let probe = probe.unwrap();
            assert!(
                probe.contains("codec_name=h264")
                    && probe.contains("width=288")
                    && probe.contains("height=512"),
                "{probe}"
            );
            assert!(
                probe.contains(&format!("nb_frames={}", (seconds as usize) * 24)),
                "{probe}"
            );
        }
        files.push(file);
    }
    // Clips of the same format join with ffmpeg's concat demuxer without re-encoding.
    if std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok()
    {
        let list = dir.path().join("list.txt");
        std::fs::write(
            &list,
            files
                .iter()
                .map(|f| format!("file '{}'\n", f.display()))
                .collect::<String>(),
        )
        .unwrap();
        let joined = dir.path().join("joined.mp4");
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "concat", "-safe", "0", "-i"])
            .arg(&list)
            .args(["-c", "copy"])
            .arg(&joined)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decode = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&joined)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(
            decode.status.success() && decode.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&decode.stderr)
        );
        // ffprobe is not part of every ffmpeg distribution; our own reader always is.
        let joined_facts = common::check_mp4(&std::fs::read(&joined).unwrap()).unwrap();
        assert_eq!(joined_facts.samples, 600);
        assert_eq!((joined_facts.width, joined_facts.height), (288, 512));
        if let Some(probe) = common::ffprobe(&joined) {
            assert!(probe.unwrap().contains("nb_frames=600"));
        }
    }
}

#[tokio::test]
async fn the_structural_check_catches_broken_files() {
    let provider = OfflineProvider::new(9);
    let req = VideoRequest {
        prompt: "Push in.".into(),
        label: "x".into(),
        reference: None,
        duration: VideoDuration::Ten,
    };
    let good = provider.render_video(&req).bytes.to_vec();
    common::check_mp4(&good).unwrap();
    let truncated = &good[..good.len() - 100];
    assert!(common::check_mp4(truncated).is_err());
    let mut bad_offset = good.clone();
    let at = good.windows(4).position(|w| w == b"stco").unwrap();
    bad_offset[at + 12] ^= 0x01;
    assert!(common::check_mp4(&bad_offset).unwrap_err().contains("mdat"));
    let mut bad_nal = good.clone();
    let mdat = good.windows(4).position(|w| w == b"mdat").unwrap();
    bad_nal[mdat + 4] = 0x7F;
    assert!(common::check_mp4(&bad_nal).is_err());
}

#[tokio::test]
async fn speech_is_a_wav_file() {
    let provider = OfflineProvider::new(1);
    let audio = provider
        .speak(&VoiceRequest {
            text: "We can't go back now.".into(),
            voice_description: "Deep, slow".into(),
        })
        .await
        .unwrap();
    let bytes = &audio.output.bytes;
    assert_eq!(sniff_mime(bytes), Some("audio/wav"));
    assert_eq!(&bytes[12..16], b"fmt ");
    let data_len = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    assert_eq!(data_len + 44, bytes.len());
    assert_eq!(
        audio.output.duration_ms as usize,
        data_len / 2 * 1000 / 16_000
    );
    assert!(audio.usage.audio_seconds >= 1);
}

#[tokio::test]
async fn offline_tasks_from_another_process_fail_clearly() {
    let provider = OfflineProvider::new(1);
    match provider.poll("offline-unknown").await.unwrap() {
        drama_ai::VideoStatus::Failed { reason } => assert!(reason.contains("submit again")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn simulated_latency_delays_images_and_keeps_clips_running_until_due() {
    let latency = OfflineLatency {
        image: Duration::from_millis(150),
        video: Duration::from_millis(400),
    };
    let slow = OfflineProvider::new(2).with_latency(latency);
    let fast = OfflineProvider::new(2);
    let req = request(ImageKind::Portrait, "Mira", vec![]);
    let started = Instant::now();
    let image = slow.generate_image(&req).await.unwrap().output;
    assert!(started.elapsed() >= latency.image);
    assert_eq!(
        image.bytes,
        fast.generate_image(&req).await.unwrap().output.bytes,
        "latency changes the timing, never the bytes"
    );

    let clip = VideoRequest {
        prompt: "Push in.".into(),
        label: "ep1-s1".into(),
        reference: None,
        duration: VideoDuration::Ten,
    };
    let task = slow.submit(&clip).await.unwrap().output;
    match slow.poll(&task.task_id).await.unwrap() {
        drama_ai::VideoStatus::Running { progress } => assert!(progress.unwrap() < 100),
        other => panic!("a clip due in 400 ms is done at once: {other:?}"),
    }
    assert!(slow.polling().deadline > latency.video);
    let submitted = Instant::now();
    let video = generate_video(&slow, &clip).await.unwrap().output;
    assert!(submitted.elapsed() >= latency.video);
    assert_eq!(video.bytes, fast.render_video(&clip).bytes);
}

#[tokio::test]
async fn latency_comes_from_the_settings() {
    let settings = drama_ai::AiSettings::from_lookup(|name| match name {
        "OFFLINE_IMAGE_DELAY_MS" => Some("120".to_owned()),
        "OFFLINE_VIDEO_DELAY_MS" => Some("30000".to_owned()),
        _ => None,
    })
    .unwrap();
    let providers = AiProviders::from_settings(&settings).unwrap();
    let polling = providers.video_model().polling();
    assert_eq!(polling.interval, Duration::from_millis(1500));
    assert_eq!(polling.deadline, Duration::from_secs(120));
    let bad = drama_ai::AiSettings::from_lookup(|name| {
        (name == "OFFLINE_VIDEO_DELAY_MS").then(|| "soon".to_owned())
    });
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("OFFLINE_VIDEO_DELAY_MS")
    );
}

#[tokio::test]
async fn with_no_keys_everything_is_offline() {
    let providers = AiProviders::from_settings(&drama_ai::AiSettings::default()).unwrap();
    assert!(providers.offline_scripts());
    for name in [
        None,
        Some("gemini-3-pro-preview"),
        Some("gpt-5.1"),
        Some("offline"),
    ] {
        assert_eq!(
            providers.script_model(name).unwrap().model().provider,
            Provider::Offline
        );
    }
    assert_eq!(providers.image_model().model().provider, Provider::Offline);
    assert_eq!(providers.video_model().model().provider, Provider::Offline);
    assert!(
        providers.script_model(Some("claude-3")).is_err(),
        "unknown names stay errors offline"
    );
}

#[tokio::test]
async fn script_calls_report_deterministic_token_usage() {
    let provider = OfflineProvider::new(3);
    let request = DramaRequest::new(DramaId::parse("d1").unwrap(), PREMISE);
    let first = provider.generate_drama(&request).await.unwrap();
    let again = provider.generate_drama(&request).await.unwrap();
    assert_eq!(
        first.usage, again.usage,
        "the same call reports the same usage"
    );
    assert_eq!(first.usage.requests, 1);
    // About four bytes of text per token, in and out.
    assert_eq!(first.usage.input_tokens, PREMISE.len().div_ceil(4) as u64);
    let written = serde_json::to_string(&first.output).unwrap();
    assert_eq!(first.usage.output_tokens, written.len().div_ceil(4) as u64);
    let d = first.output;
    let critique = provider.critique_drama(&d).await.unwrap();
    let scenes = provider
        .write_episode_scenes(&d, &d.episodes[0].id)
        .await
        .unwrap();
    let improved = provider
        .improve_drama(&d, "Raise the stakes.", &DramaId::parse("d2").unwrap())
        .await
        .unwrap();
    for usage in [critique.usage, scenes.usage, improved.usage] {
        assert!(
            usage.input_tokens > 0 && usage.output_tokens > 0,
            "{usage:?}"
        );
        assert_eq!((usage.images, usage.video_seconds), (0, 0));
    }
}

/// Labels outside Latin-1 (a Chinese title, an emoji) are drawn and recorded in the PNG, not
/// refused: PNG `tEXt` holds only Latin-1, so such a label goes into an `iTXt` chunk.
#[tokio::test]
async fn images_with_labels_outside_latin_1_are_made() {
    let provider = OfflineProvider::new(7);
    for label in ["龙之城", "Mara 🌙", "Zoë"] {
        for kind in [ImageKind::Portrait, ImageKind::Cover, ImageKind::Storyboard] {
            let image = provider
                .generate_image(&request(kind, label, vec![]))
                .await
                .unwrap_or_else(|e| panic!("{label} ({kind:?}): {e}"))
                .output;
            let (width, height, _) = decode_png(&image.bytes);
            assert!(width > 0 && height > 0, "{label}");
        }
    }
}
