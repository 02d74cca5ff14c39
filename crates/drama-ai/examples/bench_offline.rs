//! Times the offline provider: images, clips and drama writing.
//!
//! `cargo run --release -p drama-ai --example bench_offline [-- OUT_DIR]`; with `OUT_DIR`,
//! one sample of each file is written there for inspection.
#![allow(clippy::print_stderr, missing_docs)]

use std::time::{Duration, Instant};

use drama_ai::{
    DramaRequest, ImageKind, ImageModel, ImageRequest, OfflineProvider, ReferenceImage,
    ScriptModel, VideoDuration, VideoRequest, VoiceModel, VoiceRequest,
};
use drama_domain::DramaId;

fn stats(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {label} | {n} | {:.2} | {:.2} | {:.2} | {:.2} |",
        ms(total) / n as f64,
        ms(samples[n / 2]),
        ms(samples[(n * 95 / 100).min(n - 1)]),
        ms(samples[n - 1])
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::env::args().nth(1);
    let provider = OfflineProvider::new(7);
    let premise = "A corgi who becomes the CEO of a rocket company must win back her best friend, in 5 episodes.";

    // Warm up allocator and code paths.
    let _ = provider
        .generate_drama(&DramaRequest::new(DramaId::parse("warm")?, premise))
        .await?;

    println!("| operation | runs | mean ms | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|---|");

    let mut times = Vec::new();
    let mut drama = None;
    for i in 0..50 {
        let request = DramaRequest::new(
            DramaId::parse(format!("bench-{i}"))?,
            format!("{premise} Variant {i}."),
        );
        let t = Instant::now();
        let d = provider.generate_drama(&request).await?;
        times.push(t.elapsed());
        drama.get_or_insert(d.output);
    }
    stats("generate_drama", times);
    let mut drama = drama.ok_or("no drama")?;

    let mut times = Vec::new();
    for i in 0..drama.episodes.len() {
        let id = drama.episodes[i].id.clone();
        let t = Instant::now();
        let scenes = provider.write_episode_scenes(&drama, &id).await?;
        times.push(t.elapsed());
        drama.episodes[i].scenes = scenes.output;
    }
    stats("write_episode_scenes", times);

    let mut portraits = Vec::new();
    let mut times = Vec::new();
    for (i, c) in drama.characters.iter().cycle().take(30).enumerate() {
        let request = ImageRequest {
            kind: ImageKind::Portrait,
            prompt: drama_ai::prompts::portrait(c),
            label: format!("{} {i}", c.name),
            references: Vec::new(),
        };
        let t = Instant::now();
        let image = provider.generate_image(&request).await?;
        times.push(t.elapsed());
        if portraits.len() < 3 {
            portraits.push(ReferenceImage::new(image.output.bytes.clone(), "image/png"));
        }
    }
    stats("image: portrait", times);

    let scene = &drama.episodes[0].scenes[0];
    let mut times = Vec::new();
    let mut storyboard = None;
    for i in 0..30 {
        let request = ImageRequest {
            kind: ImageKind::Storyboard,
            prompt: scene.assets[0].prompt.clone(),
            label: format!("{} {i}", scene.id),
            references: portraits.clone(),
        };
        let t = Instant::now();
        let image = provider.generate_image(&request).await?;
        times.push(t.elapsed());
        storyboard.get_or_insert(image.output);
    }
    stats("image: storyboard (3 references)", times);
    let storyboard = storyboard.ok_or("no storyboard")?;

    let mut times = Vec::new();
    let mut cover = None;
    for i in 0..30 {
        let request = ImageRequest {
            kind: ImageKind::Cover,
            prompt: drama_ai::prompts::cover(&drama),
            label: format!("{} {i}", drama.title),
            references: portraits[..2].to_vec(),
        };
        let t = Instant::now();
        let image = provider.generate_image(&request).await?;
        times.push(t.elapsed());
        cover.get_or_insert(image.output);
    }
    stats("image: cover", times);
    let cover = cover.ok_or("no cover")?;

    let mut times = Vec::new();
    let mut clip = None;
    for i in 0..5 {
        let request = VideoRequest {
            prompt: scene.assets[1].prompt.clone(),
            label: format!("{} {i}", scene.id),
            reference: Some(ReferenceImage::new(storyboard.bytes.clone(), "image/png")),
            duration: VideoDuration::Ten,
        };
        let t = Instant::now();
        let video = provider.render_video(&request);
        times.push(t.elapsed());
        clip.get_or_insert(video);
    }
    stats("video: 10 s clip (render)", times);
    let clip = clip.ok_or("no clip")?;

    let speech = provider
        .speak(&VoiceRequest {
            text: scene.description.clone(),
            voice_description: drama.characters[0].voice_description.clone(),
        })
        .await?;

    println!();
    println!(
        "sizes: portrait {} B, storyboard {} B, cover {} B, 10 s clip {} B, speech {} B",
        portraits[0].bytes.len(),
        storyboard.bytes.len(),
        cover.bytes.len(),
        clip.bytes.len(),
        speech.output.bytes.len()
    );
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(format!("{dir}/portrait.png"), &portraits[0].bytes)?;
        std::fs::write(format!("{dir}/storyboard.png"), &storyboard.bytes)?;
        std::fs::write(format!("{dir}/cover.png"), &cover.bytes)?;
        std::fs::write(format!("{dir}/clip10.mp4"), &clip.bytes)?;
        let fifteen = provider.render_video(&VideoRequest {
            prompt: "A chase through the rain.".into(),
            label: "ep1-s2".into(),
            reference: None,
            duration: VideoDuration::Fifteen,
        });
        std::fs::write(format!("{dir}/clip15.mp4"), &fifteen.bytes)?;
        std::fs::write(format!("{dir}/speech.wav"), &speech.output.bytes)?;
        std::fs::write(
            format!("{dir}/drama.json"),
            serde_json::to_vec_pretty(&drama)?,
        )?;
        eprintln!("samples written to {dir}");
    }
    Ok(())
}
