//! The console's files, compiled into the binary from `crates/drama-api/console/`.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

/// One embedded file.
pub(super) struct File {
    pub(super) path: &'static str,
    pub(super) content_type: &'static str,
    pub(super) bytes: &'static [u8],
}

impl File {
    /// A strong validator of the content (the same bytes give the same tag in one build).
    pub(super) fn etag(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.bytes.hash(&mut hasher);
        format!("\"{:016x}\"", hasher.finish())
    }
}

macro_rules! embed {
    ($path:literal, $type:expr) => {
        File {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../../console/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

pub(super) const INDEX: File = embed!("index.html", "text/html; charset=utf-8");

/// The landing page of `/` for browsers.
pub(super) const LANDING: &str = include_str!("../../console/landing.html");

const FILES: &[File] = &[
    embed!("console.css", "text/css; charset=utf-8"),
    embed!("icon.svg", "image/svg+xml"),
    embed!("js/main.js", JS),
    embed!("js/api.js", JS),
    embed!("js/dom.js", JS),
    embed!("js/media.js", JS),
    embed!("js/sse.js", JS),
    embed!("js/graph.js", JS),
    embed!("js/signin.js", JS),
    embed!("js/dramas.js", JS),
    embed!("js/create.js", JS),
    embed!("js/drama.js", JS),
    embed!("js/edit.js", JS),
    embed!("js/run.js", JS),
    embed!("js/account.js", JS),
];

/// The file at `path` under `/ui/`, if the console has one.
pub(super) fn find(path: &str) -> Option<&'static File> {
    FILES.iter().find(|f| f.path == path)
}
