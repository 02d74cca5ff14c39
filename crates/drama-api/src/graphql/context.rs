use std::sync::{Arc, Mutex, PoisonError};

use drama_app::{App, Caller};
use drama_domain::UserId;

use super::jobs::{JobsLoader, JobsSlot};
use crate::media_links::NamedOwners;
use crate::realtime::{Realtime, SocketPlace};

/// Per-request context: the use cases, the authenticated caller, and the request's loaders.
/// Built for every request (and every WebSocket), never shared between callers, so nothing
/// cached in it can leak across them.
pub struct Ctx {
    pub(crate) app: App,
    pub(crate) caller: Caller,
    pub(crate) jobs: JobsSlot,
    pub(crate) realtime: Arc<Realtime>,
    /// The WebSocket's place among the streams, which its first subscription runs on (none
    /// for a request over HTTP).
    pub(crate) socket: Option<Arc<SocketPlace>>,
    /// The user a service caller's `userId: "10000"` names (`LEGACY_USER_ID`).
    pub(crate) legacy_user: Option<UserId>,
    /// The users a service caller named (`userId`), whose media URLs alone the answers
    /// carry signed: the request's record, or the socket's.
    pub(crate) named: NamedOwners,
    /// The list fields of the request served short of their `limit` (see
    /// [`Ctx::note_truncation`]), answered in `extensions.truncated`.
    truncated: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// A socket's operations each run on a clone of its context (juniper clones it for every
/// operation it starts): each gets a loader of its own, so an operation reads the jobs as they
/// are now and has the allowance of job nodes of one request, not a share of the socket's.
impl Clone for Ctx {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
            caller: self.caller,
            jobs: JobsSlot::new(JobsLoader::new(self.app.node_budget())),
            realtime: self.realtime.clone(),
            socket: self.socket.clone(),
            legacy_user: self.legacy_user,
            named: self.named.clone(),
            truncated: self.truncated.clone(),
        }
    }
}

impl Ctx {
    /// A context for one request.
    pub fn new(app: App, caller: Caller, realtime: Arc<Realtime>) -> Self {
        let budget = app.node_budget();
        Self {
            app,
            caller,
            jobs: JobsSlot::new(JobsLoader::new(budget)),
            realtime,
            socket: None,
            legacy_user: None,
            named: NamedOwners::default(),
            truncated: Arc::default(),
        }
    }

    /// Records that the list field answered under `key` served `served` items of the
    /// `limit` it was asked for while more exist (`cut`), for the answer's `extensions`: an
    /// old client's `limit` above what one field serves gets the newest items and a sign that
    /// there are more. A WebSocket's operations have no such answer to carry it; nothing is
    /// kept for them.
    pub(crate) fn note_truncation(&self, key: &str, limit: i32, served: usize, cut: bool) {
        if !cut || self.socket.is_some() {
            return;
        }
        self.truncated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(serde_json::json!({"path": [key], "limit": limit, "served": served}));
    }

    /// What [`Ctx::note_truncation`] recorded since the last call.
    pub(crate) fn take_truncations(&self) -> Vec<serde_json::Value> {
        std::mem::take(
            &mut *self
                .truncated
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The context recording the users named into `named` (shared with the signer of the
    /// answers).
    pub(crate) fn naming_into(mut self, named: NamedOwners) -> Self {
        self.named = named;
        self
    }

    /// The context of a server whose old default owner `10000` became `user`.
    pub(crate) fn with_legacy_user(mut self, user: Option<UserId>) -> Self {
        self.legacy_user = user;
        self
    }

    /// The context of a WebSocket holding `place`.
    pub(crate) fn on_socket(mut self, place: Arc<SocketPlace>) -> Self {
        self.socket = Some(place);
        self
    }
}

impl juniper::Context for Ctx {}
