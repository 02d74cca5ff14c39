use std::sync::Arc;

use drama_app::{App, Caller};
use drama_domain::UserId;

use super::jobs::JobsLoader;
use crate::media_links::NamedOwners;
use crate::realtime::{Realtime, SocketPlace};

/// Per-request context: the use cases, the authenticated caller, and the request's loaders.
/// Built for every request (and every subscription), never shared between callers, so
/// nothing cached in it can leak across them.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) app: App,
    pub(crate) caller: Caller,
    pub(crate) jobs: Arc<JobsLoader>,
    pub(crate) realtime: Arc<Realtime>,
    /// The WebSocket's place among the streams, which its first subscription runs on (none
    /// for a request over HTTP).
    pub(crate) socket: Option<Arc<SocketPlace>>,
    /// The user a service caller's `userId: "10000"` names (`LEGACY_USER_ID`).
    pub(crate) legacy_user: Option<UserId>,
    /// The users a service caller named (`userId`), whose media URLs alone the answers
    /// carry signed: the request's record, or the socket's.
    pub(crate) named: NamedOwners,
}

impl Ctx {
    /// A context for one request.
    pub fn new(app: App, caller: Caller, realtime: Arc<Realtime>) -> Self {
        Self {
            app,
            caller,
            jobs: Arc::new(JobsLoader::default()),
            realtime,
            socket: None,
            legacy_user: None,
            named: NamedOwners::default(),
        }
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
