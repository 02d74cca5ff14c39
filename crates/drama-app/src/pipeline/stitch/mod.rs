//! Stitching an episode's clips into one video.
//!
//! Clips that share their codec parameters (the offline provider's, and the H.264/AAC MP4s a
//! provider makes for one drama) are joined here, in Rust, by remuxing: no decoding, no
//! external program ([`remux`]). Only clips that differ (another resolution or codec, clips
//! from different providers) need re-encoding, which is left to ffmpeg (Debian package
//! `ffmpeg`): its concat demuxer copying the streams first, re-encoding to H.264/AAC when
//! that fails. Without ffmpeg, such clips fail with a message that says why ffmpeg is needed.

mod mp4;
mod remux;

pub use mp4::{Probe, ProbeTrack, Refused, probe};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;

/// How long a stitch attempt may run before the worker cuts it off.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The prefix of ffmpeg's scratch directories (in the system's temporary directory).
const SCRATCH_PREFIX: &str = "drama-stitch-";

/// Removes the scratch directories of stitches that stopped without cleaning up (their
/// process was killed: a dropped attempt removes its own) from the system's temporary
/// directory: those last written to longer ago than a stitch may run, which no running stitch
/// of any process owns any more. Answers how many were removed; what cannot be read or
/// removed is logged and left.
pub fn remove_stale_scratch() -> usize {
    remove_stale_scratch_in(&std::env::temp_dir(), TIMEOUT)
}

fn remove_stale_scratch_in(parent: &Path, older_than: Duration) -> usize {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(error = %e, dir = %parent.display(), "cannot list the temporary directory for stale stitch scratch");
            return 0;
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(SCRATCH_PREFIX)
        {
            continue;
        }
        // A symlink is not followed (and not a directory made here).
        let stale = entry.metadata().ok().is_some_and(|m| {
            m.is_dir()
                && m.modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > older_than)
        });
        if !stale {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(error = %e, dir = %entry.path().display(), "cannot remove a stale stitch scratch directory");
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "removed the scratch directories of stitches that were killed"
        );
    }
    removed
}

/// Why stitching failed.
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    /// The clips need re-encoding and ffmpeg is not installed (or not at the configured path).
    #[error(
        "these clips cannot be joined without re-encoding ({reason}), which needs ffmpeg, and \
         ffmpeg was not found at {path}: install the Debian package `ffmpeg` (apt-get install \
         ffmpeg) or set FFMPEG_PATH"
    )]
    Missing {
        /// Why the clips could not be remuxed.
        reason: String,
        /// Where ffmpeg was looked for.
        path: PathBuf,
    },
    /// ffmpeg ran and failed.
    #[error("ffmpeg failed: {0}")]
    Failed(String),
    /// Temporary files could not be written.
    #[error("stitching I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl StitchError {
    /// Only local I/O trouble is worth retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(_))
    }
}

async fn run(ffmpeg: &Path, args: &[&str]) -> Result<(), StitchError> {
    let output = tokio::process::Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                StitchError::Missing {
                    reason: String::new(),
                    path: ffmpeg.to_path_buf(),
                }
            }
            _ => StitchError::Io(e),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        Err(StitchError::Failed(tail))
    }
}

/// Concatenates MP4 clips, in order, into one MP4: remuxed here when they share their codec
/// parameters, through ffmpeg otherwise.
///
/// # Errors
/// [`StitchError::Missing`] when the clips need ffmpeg and it is absent (naming why they need
/// it); [`StitchError::Failed`] when ffmpeg cannot read or join them.
pub async fn concat(ffmpeg: &Path, clips: &[Bytes]) -> Result<Bytes, StitchError> {
    concat_under(ffmpeg, clips, &std::env::temp_dir()).await
}

/// [`concat`], with ffmpeg's scratch directory made inside `parent`.
async fn concat_under(ffmpeg: &Path, clips: &[Bytes], parent: &Path) -> Result<Bytes, StitchError> {
    // Remuxing copies the clips once, on a blocking thread since an episode may be hundreds
    // of megabytes (cloning `Bytes` shares them, it does not copy).
    let owned: Vec<Bytes> = clips.to_vec();
    let remuxed = tokio::task::spawn_blocking(move || {
        let views: Vec<&[u8]> = owned.iter().map(Bytes::as_ref).collect();
        remux::join(&views)
    })
    .await
    .map_err(|e| StitchError::Io(std::io::Error::other(e.to_string())))?;
    let reason = match remuxed {
        Ok(joined) => return Ok(Bytes::from(joined)),
        Err(refused) => refused.0,
    };
    tracing::info!(reason = %reason, "clips need ffmpeg to be joined");
    // The directory goes when `dir` is dropped: on success, on failure, and when the job is
    // cancelled while ffmpeg runs (dropping this future also kills ffmpeg).
    let dir = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(parent)?;
    concat_in(ffmpeg, clips, dir.path())
        .await
        .map_err(|e| match e {
            StitchError::Missing { path, .. } => StitchError::Missing { reason, path },
            other => other,
        })
}

async fn concat_in(ffmpeg: &Path, clips: &[Bytes], dir: &Path) -> Result<Bytes, StitchError> {
    let mut list = String::new();
    for (i, clip) in clips.iter().enumerate() {
        let name = format!("clip{i:04}.mp4");
        tokio::fs::write(dir.join(&name), clip).await?;
        list.push_str(&format!("file '{name}'\n"));
    }
    let list_path = dir.join("clips.txt");
    tokio::fs::write(&list_path, list).await?;
    let out = dir.join("episode.mp4");
    let (list_arg, out_arg) = (list_path.to_string_lossy(), out.to_string_lossy());
    let common = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
    ];
    let mut copy: Vec<&str> = common.to_vec();
    copy.extend([
        list_arg.as_ref(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        out_arg.as_ref(),
    ]);
    if let Err(first) = run(ffmpeg, &copy).await {
        if matches!(first, StitchError::Missing { .. }) {
            return Err(first);
        }
        let mut encode: Vec<&str> = common.to_vec();
        encode.extend([
            list_arg.as_ref(),
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
            out_arg.as_ref(),
        ]);
        run(ffmpeg, &encode).await?;
    }
    Ok(Bytes::from(tokio::fs::read(&out).await?))
}

#[cfg(test)]
mod tests;
