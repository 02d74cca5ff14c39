use drama_app::{App, Caller};

/// Per-request context: the use cases and the authenticated caller. Built for every request,
/// never shared between requests, so nothing cached in it can leak across callers.
pub struct Ctx {
    pub(crate) app: App,
    pub(crate) caller: Caller,
}

impl Ctx {
    /// A context for one request.
    pub fn new(app: App, caller: Caller) -> Self {
        Self { app, caller }
    }
}

impl juniper::Context for Ctx {}
