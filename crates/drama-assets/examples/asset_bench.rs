//! Asset-store benchmark: peak resident memory while a 1 GiB object goes up to and comes back
//! from an S3 server through the S3 backend, and throughput for 1 MiB and 64 MiB objects.
//!
//! The S3 server is s3s + s3s-fs running inside this process (on 127.0.0.1, data in a
//! temporary directory that is removed at the end), so the memory figures include the
//! server's own buffers.
//!
//! Run: `cargo run --release -p drama-assets --example asset_bench [-- --big-mib 1024]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stderr
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use bytes::Bytes;
use drama_assets::keys::asset_key;
use drama_assets::{AssetStore, ByteStream, Category, MediaType, ObjectKey, Scope, SizeLimits};
use drama_domain::{DramaId, UserId};
use futures::StreamExt;
use sha2::Digest;

const MIB: usize = 1024 * 1024;

fn key(category: Category, id: &str) -> ObjectKey {
    let scope = Scope::drama(&DramaId::parse("bench").unwrap()).unwrap();
    asset_key(
        UserId(uuid::Uuid::from_u128(42)),
        &scope,
        category,
        id,
        MediaType::Mp4,
    )
    .unwrap()
}

/// `total` bytes of a fake MP4, generated chunk by chunk as the consumer asks for them.
fn generated(total: usize, chunk: usize) -> ByteStream {
    let header = common::mp4(64, 0);
    futures::stream::unfold(0usize, move |sent| {
        let header = header.clone();
        async move {
            if sent >= total {
                return None;
            }
            let len = chunk.min(total - sent);
            let mut piece = vec![(sent / chunk) as u8; len];
            if sent == 0 {
                piece[..64].copy_from_slice(&header);
            }
            Some((Ok(Bytes::from(piece)), sent + len))
        }
    })
    .boxed()
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` value 5), so each phase is measured
/// on its own.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn drain(store: &dyn AssetStore, k: &ObjectKey) -> (usize, String) {
    let mut body = store.get(k).await.unwrap().body;
    let mut hasher = sha2::Sha256::new();
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len();
        hasher.update(&chunk);
    }
    (
        received,
        format!("sha256:{}", hex::encode(hasher.finalize())),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let big_mib: usize = args
        .iter()
        .position(|a| a == "--big-mib")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);

    // A child process with a fresh heap measures the download on its own.
    if let Some(i) = args.iter().position(|a| a == "--download-from") {
        let dir = std::path::PathBuf::from(&args[i + 1]);
        let s3 = common::TestS3::start_in(&dir).await;
        let store = s3.store(SizeLimits::default().with(Category::Episodes, 8 << 30));
        let big = key(Category::Episodes, "big");
        reset_peak();
        let base = status_kib("VmRSS:");
        let started = Instant::now();
        let (received, checksum) = drain(&store, &big).await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "download: RSS before {:.1} MiB, peak {:.1} MiB, {:.0} MiB/s, {received} bytes, {checksum}",
            mib(base),
            mib(status_kib("VmHWM:")),
            received as f64 / MIB as f64 / secs
        );
        return;
    }

    let data = tempfile::tempdir().unwrap();
    let s3 = common::TestS3::start_in(data.path()).await;
    let store = s3.store(SizeLimits::default().with(Category::Episodes, 8 << 30));
    let store: &dyn AssetStore = &store;
    let multipart = drama_assets::MultipartSettings::default();
    println!(
        "multipart: threshold {} MiB, part {} MiB, concurrency {}",
        multipart.threshold / MIB as u64,
        multipart.part_size / MIB as u64,
        multipart.concurrency
    );
    println!(
        "RSS after starting the server: {:.1} MiB",
        mib(status_kib("VmRSS:"))
    );

    // 1. Peak memory for a big object: upload here, download in a fresh process.
    let big = key(Category::Episodes, "big");
    let total = big_mib * MIB;
    reset_peak();
    let base = status_kib("VmRSS:");
    let started = Instant::now();
    let put = store
        .put_stream(&big, generated(total, MIB), "video/mp4", None)
        .await
        .unwrap();
    let up = started.elapsed();
    println!(
        "{big_mib} MiB upload: RSS before {:.1} MiB, peak {:.1} MiB, {:.0} MiB/s, {}",
        mib(base),
        mib(status_kib("VmHWM:")),
        big_mib as f64 / up.as_secs_f64(),
        put.checksum.as_deref().unwrap_or("no checksum")
    );
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--download-from")
        .arg(data.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&child.stdout);
    print!("{big_mib} MiB {report}");
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(
        report.contains(put.checksum.as_deref().unwrap_or("?")),
        "download checksum differs"
    );
    store.delete(&big).await.unwrap();

    // 2. Throughput, 1 MiB objects through put_bytes / get_bytes.
    let small = common::mp4(MIB, 1);
    let count = 64;
    let started = Instant::now();
    for i in 0..count {
        store
            .put_bytes(
                &key(Category::Clips, &format!("s{i}")),
                small.clone(),
                "video/mp4",
            )
            .await
            .unwrap();
    }
    let up = started.elapsed();
    let started = Instant::now();
    for i in 0..count {
        let (_, got) = store
            .get_bytes(&key(Category::Clips, &format!("s{i}")))
            .await
            .unwrap();
        assert_eq!(got.len(), MIB);
    }
    let down = started.elapsed();
    println!(
        "1 MiB objects x{count}: upload {:.1} ms/object ({:.0} MiB/s), download {:.1} ms/object ({:.0} MiB/s)",
        up.as_secs_f64() * 1000.0 / f64::from(count),
        f64::from(count) / up.as_secs_f64(),
        down.as_secs_f64() * 1000.0 / f64::from(count),
        f64::from(count) / down.as_secs_f64()
    );

    // 3. Throughput, 64 MiB objects streamed (multipart).
    let rounds = 4;
    let mut up_total = 0.0;
    let mut down_total = 0.0;
    for i in 0..rounds {
        let k = key(Category::Clips, &format!("m{i}"));
        let started = Instant::now();
        store
            .put_stream(
                &k,
                generated(64 * MIB, MIB),
                "video/mp4",
                Some(64 * MIB as u64),
            )
            .await
            .unwrap();
        up_total += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let (received, _) = drain(store, &k).await;
        down_total += started.elapsed().as_secs_f64();
        assert_eq!(received, 64 * MIB);
    }
    println!(
        "64 MiB objects x{rounds}: upload {:.0} MiB/s, download {:.0} MiB/s",
        64.0 * f64::from(rounds) / up_total,
        64.0 * f64::from(rounds) / down_total
    );

    let deleted = store
        .delete_prefix(&drama_assets::keys::user_prefix(UserId(
            uuid::Uuid::from_u128(42),
        )))
        .await
        .unwrap();
    println!("cleaned up {deleted} objects");
}
