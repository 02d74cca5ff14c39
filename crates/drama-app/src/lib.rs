#![doc = include_str!("../README.md")]

mod account;
mod admission;
mod caller;
mod dramas;
mod error;
mod identity;
mod keys;
mod library;
mod limits;
pub mod media;
mod once;
pub mod pipeline;
mod pricing;
mod quotas;
mod readiness;
mod sweeper;
mod usage;

pub use account::{Account, MAX_LEDGER_PAGE};
pub use caller::{Caller, PresentedKey};
pub use drama_dal::{CreditReason, LedgerEntry};
pub use dramas::delete_drama_of;
pub use error::{AppError, Precondition};
pub use identity::{KeyCaller, key_fingerprint, looks_like_api_key};
pub use keys::{
    KEY_HISTORY_DAYS, MAX_ACTIVE_KEYS, MAX_KEY_DAYS, MAX_KEY_NAME, MAX_KEYS_PER_DAY,
    MAX_LISTED_KEYS, NewKey,
};
pub use library::{
    LIBRARY_PAGE_BYTES, LIBRARY_PAGE_DEFAULT, LIBRARY_PAGE_MAX, LibraryItem, LibraryPage,
    LibraryQuery, LibraryTag, LibraryType, LibraryUpload,
};
pub use limits::{MAX_METADATA_BYTES, TextLimits};
pub use once::{KEY_WINDOW, MAX_KEY_LEN, RequestKey};
pub use pricing::{MediaPrices, ModelPrice, Pricing, TokenPrices};
pub use quotas::Quotas;
pub use readiness::{READINESS_CHECK_TIMEOUT, Readiness};

/// Names of the repository layer that use cases take and return (pages of a listing, the
/// stored form of a drama with its version, the change feed), so callers of the app need no
/// dependency on the repositories themselves.
pub mod store {
    pub use drama_dal::{Cursor, DramaChange, Entity, Page, PageRequest, StoredDrama, Version};
}

/// Names of the job engine that use cases return (job ids, views, the event log and its live
/// notifications), so callers can show and follow runs without depending on the engine.
pub mod jobs {
    pub use drama_jobs::{
        Event, EventId, EventKind, JobId, JobState, JobView, NodeType, Notification, RunId,
    };
}

use std::path::PathBuf;
use std::sync::Arc;

use drama_ai::AiProviders;
use drama_assets::AssetStore;
use drama_dal::{GenerationStore, MemoryStore, Store};
use drama_jobs::MemoryJobStore;

use crate::pipeline::jobs_port::{EngineJobs, JobsPort};
use crate::pipeline::memory_generation::MemoryGeneration;

/// The ports an [`App`] runs on. The binary builds them once; tests build them in memory.
pub struct Ports {
    /// Repositories.
    pub store: Arc<dyn Store>,
    /// Object storage.
    pub assets: Arc<dyn AssetStore>,
    /// The pipeline's atomic writes.
    pub generation: Arc<dyn GenerationStore>,
    /// The job engine.
    pub jobs: Arc<dyn JobsPort>,
    /// AI providers.
    pub ai: AiProviders,
}

impl Ports {
    /// Everything in memory with `assets` and `ai`; also returns the concrete stores (a
    /// worker needs the job store, tests the repositories).
    pub fn memory(
        assets: Arc<dyn AssetStore>,
        ai: AiProviders,
    ) -> (Self, Arc<MemoryStore>, Arc<MemoryJobStore>) {
        let store = Arc::new(MemoryStore::new());
        let jobs = Arc::new(MemoryJobStore::new());
        let ports = Self {
            store: store.clone(),
            assets,
            generation: Arc::new(MemoryGeneration::new(store.clone(), jobs.clone())),
            jobs: Arc::new(EngineJobs(jobs.clone())),
            ai,
        };
        (ports, store, jobs)
    }
}

/// The use cases, on ports wired by the binary.
///
/// Cheap to clone (every port is shared); build one at startup and share it between the API
/// and the workers.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn Store>,
    assets: Arc<dyn AssetStore>,
    generation: Arc<dyn GenerationStore>,
    jobs: Arc<dyn JobsPort>,
    ai: AiProviders,
    price_offline: bool,
    ffmpeg: PathBuf,
    public_base_url: String,
    quotas: Quotas,
    limits: TextLimits,
    sync_wait: std::time::Duration,
    /// How long a step after a paid provider call keeps trying through passing failures.
    paid_step_patience: std::time::Duration,
    initial_credits: i64,
    /// Turns of the checks that guard a write (quotas, a free drama id); see `admission`.
    admission: Arc<admission::Admission>,
    /// What each user stores, as the quota checks last counted it; see `usage`.
    usage: Arc<usage::UsageCache>,
    /// Job nodes one request may read for the `jobs` of dramas (`node_budget`).
    tree_nodes: usize,
}

/// Where clients reach the API when nothing else is configured.
pub const DEFAULT_PUBLIC_BASE_URL: &str = "http://localhost:8000";

impl App {
    /// Use cases on these ports, with `ffmpeg` from `PATH`; prices come from the providers'
    /// settings (`PRICE_*`, `SCRIPT_MODELS`).
    pub fn new(ports: Ports) -> Self {
        let usage = Arc::new(usage::UsageCache::default());
        Self {
            store: ports.store,
            // What this process stores keeps the quota counts an upper bound.
            assets: Arc::new(usage::Tracked {
                inner: ports.assets,
                usage: usage.clone(),
            }),
            generation: ports.generation,
            jobs: ports.jobs,
            ai: ports.ai,
            price_offline: false,
            ffmpeg: PathBuf::from("ffmpeg"),
            public_base_url: DEFAULT_PUBLIC_BASE_URL.to_owned(),
            quotas: Quotas::UNLIMITED,
            limits: TextLimits::default(),
            sync_wait: crate::pipeline::jobs_port::SYNC_WAIT,
            paid_step_patience: crate::pipeline::product::PAID_STEP_PATIENCE,
            initial_credits: drama_dal::DEFAULT_TOKENS,
            admission: Arc::default(),
            usage,
            tree_nodes: crate::pipeline::MAX_TREE_NODES,
        }
    }

    /// Sets how many job nodes one request may read for the `jobs` of dramas
    /// ([`MAX_TREE_NODES`](crate::pipeline::MAX_TREE_NODES) by default); a test sets it
    /// small to reach the bound with few jobs.
    #[must_use]
    pub fn with_max_tree_nodes(mut self, nodes: usize) -> Self {
        self.tree_nodes = nodes;
        self
    }

    /// Sets how many locks users (and drama ids) are spread over for the checks that guard
    /// a write (256 by default; at least 1); users on one lock wait for each other's checks.
    /// A test sets 1 so that every user shares one.
    #[must_use]
    pub fn with_admission_stripes(mut self, stripes: usize) -> Self {
        self.admission = Arc::new(admission::Admission::new(stripes));
        self
    }

    /// The allowance of job nodes for one request's reads of the `jobs` of dramas
    /// ([`App::trees_of_dramas`]).
    pub fn node_budget(&self) -> crate::pipeline::NodeBudget {
        crate::pipeline::NodeBudget::new(self.tree_nodes)
    }

    /// Sets the credits a user opens with (`INITIAL_CREDITS`; negative values count as 0).
    #[must_use]
    pub fn with_initial_credits(mut self, credits: i64) -> Self {
        self.initial_credits = credits.max(0);
        self
    }

    /// The credits a user opens with, recorded as the first entry of their ledger.
    pub fn initial_credits(&self) -> i64 {
        self.initial_credits
    }

    /// Sets the API's public origin (e.g. `https://api.example.com`), used in the URLs of
    /// objects that have no public URL of their own.
    #[must_use]
    pub fn with_public_base_url(mut self, base: impl Into<String>) -> Self {
        self.public_base_url = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets the ffmpeg binary used to stitch episodes.
    #[must_use]
    pub fn with_ffmpeg(mut self, path: impl Into<PathBuf>) -> Self {
        self.ffmpeg = path.into();
        self
    }

    /// How long a step after a paid provider call (recording the object, uploading it,
    /// committing, checkpointing a video's task id) keeps trying through passing database or
    /// bucket failures before the attempt gives up and the task's next attempt takes over
    /// (90 s, a failover's length, by default). A test that wants that next attempt sets it
    /// short; zero means one try.
    #[must_use]
    pub fn with_paid_step_patience(mut self, patience: std::time::Duration) -> Self {
        self.paid_step_patience = patience;
        self
    }

    /// Sets how long the synchronous use cases (portrait, cover) wait for their run before
    /// answering with the run still going; the API sets it inside its request deadline.
    #[must_use]
    pub fn with_sync_wait(mut self, wait: std::time::Duration) -> Self {
        self.sync_wait = wait;
        self
    }

    /// Sets how long client text may be.
    #[must_use]
    pub fn with_text_limits(mut self, limits: TextLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Prices offline calls as if a real provider made them, so that credits can be
    /// exercised (and demonstrated) without paid providers.
    #[must_use]
    pub fn with_offline_pricing(mut self, price: bool) -> Self {
        self.price_offline = price;
        self
    }

    /// The calls the offline provider of this process answered: what paid providers would
    /// have billed, logged by workers when they stop (benchmarks and tests compare it with
    /// the number of tasks).
    pub fn offline_calls(&self) -> drama_ai::OfflineCalls {
        self.ai.offline_provider().calls()
    }

    /// The asset store.
    pub fn assets(&self) -> &Arc<dyn AssetStore> {
        &self.assets
    }

    /// The API's public origin.
    pub fn public_base_url(&self) -> &str {
        &self.public_base_url
    }

    /// The job engine port (realtime feeds subscribe through it).
    pub fn jobs(&self) -> &Arc<dyn JobsPort> {
        &self.jobs
    }
}
