//! Multipart uploads: the part-size rules S3 and R2 impose, the concurrent part uploads, and
//! the guard that aborts an unfinished upload. Kept apart from the single-request paths in the
//! parent module because only large objects take it and its failure handling is its own.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::S3Store;
use crate::error::AssetError;
use crate::intake::{Intake, IntakeSummary};
use crate::keys::ObjectKey;
use crate::s3_options::MAX_PARTS;

impl S3Store {
    #[tracing::instrument(skip_all, fields(key = %key, upload_id))]
    pub(super) async fn put_multipart(
        &self,
        key: &ObjectKey,
        mut intake: Intake,
        content_type: &str,
    ) -> Result<(Option<String>, IntakeSummary), AssetError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| self.map_err(e, key.as_str()))?;
        let upload_id = created
            .upload_id
            .ok_or_else(|| AssetError::backend("CreateMultipartUpload returned no upload id"))?;
        tracing::Span::current().record("upload_id", upload_id.as_str());
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_string(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        let result = self.upload_parts(key, &mut intake, &upload_id).await;
        let parts = match result {
            Ok(parts) => parts,
            Err(e) => {
                guard.armed = false;
                guard.abort().await;
                return Err(e);
            }
        };
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        guard.armed = false;
        match completed {
            Ok(out) => Ok((out.e_tag, intake.finish())),
            Err(e) => {
                let err = self.map_err(e, key.as_str());
                guard.abort().await;
                Err(err)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &ObjectKey,
        intake: &mut Intake,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, AssetError> {
        let part_size = usize::try_from(self.multipart.part_size).unwrap_or(usize::MAX);
        let mut running: JoinSet<Result<CompletedPart, AssetError>> = JoinSet::new();
        let mut parts = Vec::new();
        let mut next_number: i32 = 1;
        let mut exhausted = false;
        loop {
            while !exhausted && running.len() < self.multipart.concurrency {
                let Some(part) = intake.next_part(part_size).await? else {
                    exhausted = true;
                    break;
                };
                if next_number > MAX_PARTS as i32 {
                    return Err(AssetError::TooLarge {
                        key: key.to_string(),
                        limit: self.multipart.part_size * u64::from(MAX_PARTS),
                    });
                }
                let store = self.clone();
                let key = key.clone();
                let upload_id = upload_id.to_owned();
                let number = next_number;
                next_number += 1;
                running
                    .spawn(async move { store.upload_part(&key, &upload_id, number, part).await });
            }
            match running.join_next().await {
                Some(Ok(Ok(done))) => parts.push(done),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(join)) => {
                    return Err(AssetError::backend(format!(
                        "part upload task failed: {join}"
                    )));
                }
                None if exhausted => break,
                None => {}
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, AssetError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(number)
            .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.map_err(e, key.as_str()))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
    }
}

/// Aborts a multipart upload that did not complete, even when the uploading future is
/// dropped halfway (the caller went away), so no orphaned parts are left to bill.
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortGuard {
    async fn abort(&self) {
        abort_upload(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, bucket, key, upload_id) = (
                self.client.clone(),
                self.bucket.clone(),
                self.key.clone(),
                self.upload_id.clone(),
            );
            runtime.spawn(async move { abort_upload(&client, &bucket, &key, &upload_id).await });
        }
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let result = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    if let Err(e) = result {
        tracing::warn!(key, upload_id, error = %DisplayErrorContext(&e), "aborting a multipart upload failed; the bucket's lifecycle rule will remove its parts");
    }
}
