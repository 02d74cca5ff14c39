//! The import records a run decides with: this origin's, by source key, and every origin's,
//! by drama, so that a drama an import from the other origin (the old tables, or the bucket)
//! brought in is told apart from one that was never imported.

use std::collections::HashMap;

use drama_dal::Version;
use drama_dal::legacy::RecordedImport;
use drama_domain::{DramaId, UserId};

use crate::report::{Reason, ReasonCode};

pub(super) struct Records {
    /// This origin's records, by source key.
    pub(super) by_key: HashMap<String, RecordedImport>,
    /// Every origin's records, by drama id.
    by_drama: HashMap<DramaId, Vec<RecordedImport>>,
}

impl Records {
    /// Sorts every record (of any origin) into this origin's, whose keys start with
    /// `source_prefix`, and all of them by drama.
    pub(super) fn new(all: Vec<RecordedImport>, source_prefix: &str) -> Self {
        let mut by_key = HashMap::new();
        let mut by_drama: HashMap<DramaId, Vec<RecordedImport>> = HashMap::new();
        for r in all {
            if r.record.source_key.starts_with(source_prefix) {
                by_key.insert(r.record.source_key.clone(), r.clone());
            }
            by_drama
                .entry(r.record.drama_id.clone())
                .or_default()
                .push(r);
        }
        Self { by_key, by_drama }
    }

    /// Why a file is not written over `owner`'s drama `id` (at `version`), which exists, differs
    /// from the file, and was not imported from it. When an import from another source (the old
    /// server's tables, whose rows never held assets, metadata, `premise_url` or episode
    /// premises; or another bucket layout) brought the drama in for the same owner, the reason
    /// names that source: on the old server's split branch the bucket and the tables held two
    /// diverging copies of the same drama, and only the operator can tell which one to keep.
    pub(super) fn not_imported_here(
        &self,
        source_key: &str,
        id: &DramaId,
        owner: UserId,
        version: Version,
    ) -> Reason {
        let other = self.by_drama.get(id).and_then(|records| {
            records
                .iter()
                .filter(|r| r.record.source_key != source_key && r.record.owner == owner)
                .max_by_key(|r| r.record.imported_at)
        });
        let Some(other) = other else {
            return Reason::new(
                ReasonCode::ExistsNotImported,
                "a drama with this id and owner exists, was not imported from this file and \
                 differs from it; --overwrite replaces it with the file",
            );
        };
        let since = if other.record.version == version {
            "not edited since".to_owned()
        } else {
            format!(
                "edited since (version {version}, imported as version {})",
                other.record.version
            )
        };
        let overwrite = if other.record.source_key.starts_with("db:") {
            "--overwrite replaces it with this file, which holds what the old tables never \
             stored (assets, metadata, premise_url, episode premises); what only the rows held \
             (cover and portrait URLs the old GraphQL wrote) is then lost"
        } else {
            "--overwrite replaces it with this row, which lacks what the old tables never stored \
             (assets, metadata, premise_url, episode premises)"
        };
        Reason::new(
            ReasonCode::ImportedFromOtherSource,
            format!(
                "drama {id} was imported for this owner from {} ({since}) and differs from this \
                 copy of it, so it is left as that import made it; {overwrite}",
                other.record.source_key
            ),
        )
    }
}
