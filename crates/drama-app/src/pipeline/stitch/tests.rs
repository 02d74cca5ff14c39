//! Joining the offline provider's clips without ffmpeg, and what happens to clips that
//! cannot be joined that way.

use std::path::Path;

use bytes::Bytes;
use drama_ai::{OfflineProvider, VideoDuration, VideoRequest};

use super::mp4::{self, probe};
use super::{StitchError, TIMEOUT, concat, concat_under, remove_stale_scratch_in, remux};

fn clip(seed: u64, label: &str, duration: VideoDuration) -> Bytes {
    OfflineProvider::new(seed)
        .render_video(&VideoRequest {
            prompt: format!("slow push in on {label}"),
            label: label.to_owned(),
            reference: None,
            duration,
        })
        .bytes
}

/// Every sample's bytes of a file's first track, in order.
fn sample_bytes(file: &[u8]) -> Vec<Vec<u8>> {
    let movie = mp4::read(file).unwrap();
    let track = &movie.tracks[0];
    let mut out = Vec::new();
    let mut next = 0;
    for chunk in &track.chunks {
        let mut at = usize::try_from(chunk.offset).unwrap();
        for s in &track.samples[next..next + chunk.samples] {
            let size = s.size as usize;
            out.push(file[at..at + size].to_vec());
            at += size;
        }
        next += chunk.samples;
    }
    out
}

#[tokio::test]
async fn offline_clips_join_without_ffmpeg_into_one_playable_file() {
    let clips = [
        clip(1, "e1-s0", VideoDuration::Ten),
        clip(2, "e1-s1", VideoDuration::Fifteen),
        clip(3, "e1-s2", VideoDuration::Ten),
    ];
    let joined = concat(Path::new("/nonexistent/ffmpeg"), &clips)
        .await
        .unwrap();
    let whole = probe(&joined).unwrap();
    let parts: Vec<_> = clips.iter().map(|c| probe(c).unwrap()).collect();
    let sum: f64 = parts.iter().map(|p| p.duration).sum();
    assert!(
        (whole.duration - sum).abs() < 1e-6,
        "{} vs {sum}",
        whole.duration
    );
    assert!((whole.duration - 35.0).abs() < 0.1, "{}", whole.duration);
    assert_eq!(whole.tracks.len(), 1);
    assert_eq!(
        whole.tracks[0].samples,
        parts.iter().map(|p| p.tracks[0].samples).sum::<usize>()
    );
    assert_eq!(
        whole.tracks[0].sync_samples,
        parts
            .iter()
            .map(|p| p.tracks[0].sync_samples)
            .sum::<usize>()
    );
    // The frames are the clips' frames, in order, byte for byte; moov comes before mdat.
    let expected: Vec<Vec<u8>> = clips.iter().flat_map(|c| sample_bytes(c)).collect();
    assert_eq!(sample_bytes(&joined), expected);
    let top: Vec<[u8; 4]> = mp4::atoms(&joined)
        .unwrap()
        .iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(top, [*b"ftyp", *b"moov", *b"mdat"]);
    // A joined file joins again (an episode of episodes).
    let twice = remux::join(&[&joined, &clips[0]]).unwrap();
    assert!((probe(&twice).unwrap().duration - 45.0).abs() < 0.1);
}

#[tokio::test]
async fn clips_with_other_codec_parameters_need_ffmpeg_and_the_error_says_so() {
    let a = clip(1, "a", VideoDuration::Ten);
    let mut b = clip(2, "b", VideoDuration::Ten).to_vec();
    // Another profile in the SPS: what a clip of another encoder setting would carry.
    let at = b.windows(4).position(|w| w == b"avcC").unwrap();
    b[at + 5] ^= 0x01;
    let refused = remux::join(&[&a, &b]).unwrap_err();
    assert!(
        refused
            .0
            .contains("clip 2's video has other codec parameters than clip 1's"),
        "{refused}"
    );
    let err = concat(Path::new("/nonexistent/ffmpeg"), &[a, Bytes::from(b)])
        .await
        .unwrap_err();
    assert!(matches!(err, StitchError::Missing { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("other codec parameters") && text.contains("ffmpeg was not found"),
        "{text}"
    );
}

/// Two clips the remuxer refuses (another profile in the second one's SPS), so that joining
/// them needs ffmpeg.
fn clips_needing_ffmpeg() -> [Bytes; 2] {
    let a = clip(1, "a", VideoDuration::Ten);
    let mut b = clip(2, "b", VideoDuration::Ten).to_vec();
    let at = b.windows(4).position(|w| w == b"avcC").unwrap();
    b[at + 5] ^= 0x01;
    [a, Bytes::from(b)]
}

/// An executable shell script standing in for ffmpeg.
fn fake_ffmpeg(dir: &Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("ffmpeg");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test]
async fn a_failed_stitch_leaves_no_directory_behind() {
    let (tools, parent) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ffmpeg = fake_ffmpeg(tools.path(), "echo 'cannot join' >&2; exit 1");
    let err = concat_under(&ffmpeg, &clips_needing_ffmpeg(), parent.path())
        .await
        .unwrap_err();
    assert!(matches!(err, StitchError::Failed(_)), "{err}");
    assert_eq!(entries(parent.path()), Vec::<std::path::PathBuf>::new());
}

#[tokio::test]
async fn a_cancelled_stitch_leaves_no_directory_behind() {
    let (tools, parent) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // ffmpeg hangs; `exec` makes the killed process the sleeping one.
    let ffmpeg = fake_ffmpeg(tools.path(), "exec sleep 60");
    let clips = clips_needing_ffmpeg();
    let stitch = concat_under(&ffmpeg, &clips, parent.path());
    // Run the stitch until its clips are written and ffmpeg was started, then drop it as a
    // cancelled job's handler is dropped.
    let started = async {
        loop {
            let ready = entries(parent.path())
                .iter()
                .any(|dir| dir.join("clips.txt").exists());
            if ready {
                // ffmpeg is spawned right after the list is written.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        result = stitch => panic!("the stitch ended before it was cancelled: {result:?}"),
        started = tokio::time::timeout(std::time::Duration::from_secs(30), started) => {
            started.expect("the stitch never got as far as running ffmpeg");
        }
    }
    assert_eq!(entries(parent.path()), Vec::<std::path::PathBuf>::new());
}

/// A worker killed while ffmpeg ran leaves its scratch directory (nothing dropped it): the
/// next worker to start removes those older than a stitch may run, and nothing else.
#[test]
fn stale_scratch_directories_of_killed_stitches_are_removed_at_start() {
    let parent = tempfile::tempdir().unwrap();
    let made = |name: &str, age: std::time::Duration| {
        let dir = parent.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("clip0000.mp4"), b"clip").unwrap();
        let when = std::time::SystemTime::now() - age;
        std::fs::File::open(&dir)
            .unwrap()
            .set_modified(when)
            .unwrap();
        dir
    };
    let hour = std::time::Duration::from_secs(3600);
    let killed = made("drama-stitch-AbC123", hour);
    let running = made("drama-stitch-XyZ789", std::time::Duration::from_secs(60));
    let foreign = made("other-tool-old", hour);
    let file = parent.path().join("drama-stitch-not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    std::fs::File::open(&file)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - hour)
        .unwrap();

    assert_eq!(remove_stale_scratch_in(parent.path(), TIMEOUT), 1);
    assert!(!killed.exists(), "the killed stitch's directory is removed");
    assert!(running.exists(), "a running stitch keeps its directory");
    assert!(foreign.exists() && file.exists(), "nothing else is touched");
}

#[test]
fn broken_files_are_refused_not_guessed() {
    let good = clip(4, "x", VideoDuration::Ten);
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("not mp4", b"\x89PNG\r\n\x1a\n0000000000000000".to_vec()),
    ] {
        assert!(remux::join(&[&good, &bytes]).is_err(), "{what}");
        assert!(probe(&bytes).is_err(), "{what}");
    }
    assert!(remux::join(&[]).is_err());
}

/// The ffmpeg of the test environment (`scripts/test` provides one): `FFMPEG_PATH`, else the
/// one on `PATH`.
fn ffmpeg() -> String {
    std::env::var("FFMPEG_PATH").unwrap_or_else(|_| "ffmpeg".to_owned())
}

fn run(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(ffmpeg())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ffmpeg is needed to make provider-like clips: {e}"));
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Clips as a provider delivers them: H.264 with B-frames (composition offsets and an edit
/// list) and AAC audio (with its priming edit), of different lengths and pictures.
#[test]
fn provider_like_h264_aac_clips_join_and_decode_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut clips = Vec::new();
    for (i, (source, seconds)) in [("testsrc", "2"), ("testsrc2", "3"), ("smptebars", "2")]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("clip{i}.mp4"));
        let path = path.to_str().unwrap();
        run(&[
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("{source}=size=320x240:rate=25"),
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency={}:sample_rate=44100", 300 + 100 * i),
            "-t",
            seconds,
            "-c:v",
            "libx264",
            "-bf",
            "2",
            "-pix_fmt",
            "yuv420p",
            // One provider tags every clip alike; without this, sources that carry their own
            // colour description (smptebars) put it in the SPS, and a newer ffmpeg passes it on.
            "-color_primaries",
            "bt709",
            "-color_trc",
            "bt709",
            "-colorspace",
            "bt709",
            "-color_range",
            "tv",
            "-c:a",
            "aac",
            "-shortest",
            path,
        ]);
        clips.push(std::fs::read(path).unwrap());
    }
    let views: Vec<&[u8]> = clips.iter().map(Vec::as_slice).collect();
    let joined = remux::join(&views).unwrap();
    let whole = probe(&joined).unwrap();
    let parts: Vec<_> = clips.iter().map(|c| probe(c).unwrap()).collect();
    assert_eq!(whole.tracks.len(), 2, "video and audio");
    for (t, track) in whole.tracks.iter().enumerate() {
        let sum: f64 = parts.iter().map(|p| p.tracks[t].duration).sum();
        assert!(
            (track.duration - sum).abs() < 1e-6,
            "{}: {} vs {sum}",
            track.handler,
            track.duration
        );
        assert_eq!(
            track.samples,
            parts.iter().map(|p| p.tracks[t].samples).sum::<usize>()
        );
    }
    let video_sum: f64 = parts.iter().map(|p| p.tracks[0].duration).sum();
    assert!((video_sum - 7.0).abs() < 0.1, "{video_sum}");
    // ffmpeg decodes every frame of the joined file without a complaint.
    let out_path = dir.path().join("joined.mp4");
    std::fs::write(&out_path, &joined).unwrap();
    let decoded = run(&[
        "-hide_banner",
        "-v",
        "error",
        "-i",
        out_path.to_str().unwrap(),
        "-f",
        "null",
        "-",
    ]);
    assert!(
        decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
}
