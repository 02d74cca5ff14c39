//! What the S3 backend is configured with, and the part-size rules S3 and R2 impose: plain
//! values, present in every build so settings are read and checked the same way whether or
//! not the backend itself (cargo feature `s3`) is compiled in.

use std::time::Duration;

use secrecy::SecretString;

use crate::error::AssetError;
use crate::limits::SizeLimits;

/// Everything the S3 backend needs.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// The S3 API endpoint, e.g. `https://{account}.r2.cloudflarestorage.com` or
    /// `http://127.0.0.1:9000`.
    pub endpoint_url: String,
    /// Signing region; `auto` for R2.
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretString,
    /// Base of public URLs (`{base}/{key}`), e.g. the bucket's custom domain.
    pub public_base_url: Option<String>,
    /// Upload splitting.
    pub multipart: MultipartSettings,
    /// Size limits per category.
    pub limits: SizeLimits,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt of one request (a part upload, a head, …; not the
    /// streaming of a download's body).
    pub attempt_timeout: Duration,
    /// Attempts per request, the first included; transient failures (timeouts, 5xx,
    /// throttling, dropped connections) are retried with backoff.
    pub max_attempts: u32,
}

/// Smallest part S3 and R2 accept (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part S3 and R2 accept.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Most parts in one multipart upload.
pub const MAX_PARTS: u32 = 10_000;

/// How uploads are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartSettings {
    /// Objects longer than this go up in parts; shorter ones in one request. At most this
    /// many bytes are held before the choice is made.
    pub threshold: u64,
    /// Size of every part but the last (R2 requires them equal).
    pub part_size: u64,
    /// Parts uploaded at the same time. Memory use is about `(concurrency + 1) × part_size`.
    pub concurrency: usize,
}

impl Default for MultipartSettings {
    fn default() -> Self {
        Self {
            threshold: 16 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            concurrency: 3,
        }
    }
}

impl MultipartSettings {
    /// Checks the values against S3's rules.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] naming the variable.
    pub fn validate(&self) -> Result<(), AssetError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(AssetError::InvalidSettings {
                variable: "ASSETS_MULTIPART_PART_SIZE",
                message: format!(
                    "must be between 5MiB and 5GiB (S3 and R2 part limits), got {}",
                    self.part_size
                ),
            });
        }
        if self.threshold < self.part_size {
            return Err(AssetError::InvalidSettings {
                variable: "ASSETS_MULTIPART_THRESHOLD",
                message: format!(
                    "must be at least the part size ({}), got {}",
                    self.part_size, self.threshold
                ),
            });
        }
        if self.threshold > MAX_PART_SIZE {
            return Err(AssetError::InvalidSettings {
                variable: "ASSETS_MULTIPART_THRESHOLD",
                message: "must be at most 5GiB (the single-request limit)".to_owned(),
            });
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(AssetError::InvalidSettings {
                variable: "ASSETS_MULTIPART_CONCURRENCY",
                message: format!("must be between 1 and 64, got {}", self.concurrency),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_settings_follow_the_s3_rules() {
        assert!(MultipartSettings::default().validate().is_ok());
        let small = MultipartSettings {
            part_size: 1024,
            ..MultipartSettings::default()
        };
        assert!(
            small
                .validate()
                .unwrap_err()
                .to_string()
                .contains("ASSETS_MULTIPART_PART_SIZE")
        );
        let low = MultipartSettings {
            threshold: MIN_PART_SIZE,
            part_size: 2 * MIN_PART_SIZE,
            concurrency: 1,
        };
        assert!(
            low.validate()
                .unwrap_err()
                .to_string()
                .contains("ASSETS_MULTIPART_THRESHOLD")
        );
    }
}
