//! Dramas imported earlier whose source (file or row) is gone: reported, and deleted on
//! request when nobody edited them since their import.

use std::collections::{HashMap, HashSet};

use drama_dal::RepoError;
use drama_dal::legacy::RecordedImport;

use super::Importer;
use crate::report::{DramaReport, Outcome, Reason, ReasonCode};

impl Importer {
    /// The records of this origin whose source the gathering did not find, and whose drama
    /// still exists, in key order. A drama already deleted in the database needs nothing.
    pub(super) fn gone_from_source(
        &self,
        found: &HashSet<String>,
        recorded: &HashMap<String, RecordedImport>,
    ) -> Vec<RecordedImport> {
        let mut gone: Vec<RecordedImport> = recorded
            .values()
            .filter(|r| {
                let key = r.record.source_key.as_str();
                // The prefix alone does not say the key is this origin's: the root layout's
                // prefix is empty, and every record starts with it.
                !found.contains(key) && self.origin.owns_key(key) && r.current.is_some()
            })
            .cloned()
            .collect();
        gone.sort_by(|a, b| a.record.source_key.cmp(&b.record.source_key));
        gone
    }

    /// Reports (and with `delete_gone`, deletes) a drama whose source is gone since its
    /// import. It is deleted only when nobody edited it in the database since: its version
    /// is still the one recorded by the import, read again right before the delete.
    pub(super) async fn source_gone(&self, recorded: RecordedImport) -> DramaReport {
        let record = recorded.record;
        let mut report = DramaReport::new(
            record.source_key.clone(),
            record.drama_id.to_string(),
            false,
        );
        report.owner = Some(record.owner);
        let keep = |report: DramaReport, code, message: String| {
            report.done(Outcome::SourceDeleted, Some(Reason::new(code, message)))
        };
        let now = match self.repos.imports.drama_state(&record.drama_id).await {
            Ok(Some(now)) => now,
            Ok(None) => {
                let message = "the source no longer holds it, and the drama was deleted in the \
                               database meanwhile"
                    .to_owned();
                return keep(report, ReasonCode::DeletedSinceImport, message);
            }
            Err(e) => return database_failure(report, &e),
        };
        report.version = Some(now.version);
        if now.owner != record.owner {
            let message = format!(
                "the source no longer holds it; drama {} now belongs to another user and is \
                 left alone",
                record.drama_id
            );
            return keep(report, ReasonCode::SourceDeleted, message);
        }
        if now.version != record.version {
            let message = format!(
                "the source no longer holds it; the drama was edited in the database since its \
                 import (version {}, imported as version {}) and is kept",
                now.version, record.version
            );
            return keep(report, ReasonCode::EditedSinceImport, message);
        }
        if !self.options.delete_gone {
            let message = "the source no longer holds it (deleted on the old side); the drama \
                 is kept as imported; --delete-gone deletes it"
                .to_owned();
            return keep(report, ReasonCode::SourceDeleted, message);
        }
        if self.options.dry_run {
            return report.done(Outcome::Deleted, None);
        }
        let Some(remover) = &self.remover else {
            // `run` refuses `delete_gone` without a remover before anything happens.
            return keep(
                report,
                ReasonCode::SourceDeleted,
                "no way to delete dramas was given".to_owned(),
            );
        };
        match remover.delete_drama(record.owner, &record.drama_id).await {
            Ok(()) | Err(RepoError::NotFound { .. }) => {
                tracing::info!(drama = %record.drama_id, source = record.source_key, "deleted: its source is gone");
                report.version = None;
                report.done(Outcome::Deleted, None)
            }
            Err(e) => database_failure(report, &e),
        }
    }
}

/// A drama imported earlier and deleted in the database since: not created again.
pub(super) fn deleted_since_import(report: DramaReport) -> DramaReport {
    report.done(
        Outcome::Skipped,
        Some(Reason::new(
            ReasonCode::DeletedSinceImport,
            "deleted in the database since its import; --overwrite creates it again",
        )),
    )
}

/// A drama the database could not read or write.
pub(super) fn database_failure(report: DramaReport, e: &RepoError) -> DramaReport {
    report.done(
        Outcome::Failed,
        Some(Reason::new(ReasonCode::Database, e.to_string())),
    )
}
