//! The dependency rules of the workspace, written once.
//!
//! `docs/ARCHITECTURE.md` carries a table generated from these rules (between the
//! `deps:begin`/`deps:end` markers) and `xtask deps` fails when the manifests break them or the
//! table differs from what the rules generate.

/// What one workspace crate may depend on.
pub struct CrateRule {
    /// Package name.
    pub name: &'static str,
    /// Workspace crates allowed as normal (and build) dependencies.
    pub may_use: &'static [&'static str],
    /// Workspace crates allowed only as dev-dependencies (tests wire real backends).
    pub dev_may_use: &'static [&'static str],
    /// Edges that break the target shape and are still present: each one must exist (the
    /// check fails once it is gone, so the list only shrinks) and says why it is still there.
    pub pending: &'static [(&'static str, &'static str)],
}

/// Third-party crates only some workspace crates may name in their normal dependencies.
pub struct ExternalRule {
    /// A package name, or a prefix ending in `*` (`actix-*`).
    pub pattern: &'static str,
    /// Workspace crates that may depend on it (normal or build dependency).
    pub only: &'static [&'static str],
    /// Why the rule exists.
    pub why: &'static str,
}

/// Every workspace crate, inner layers first.
pub const CRATES: &[CrateRule] = &[
    CrateRule {
        name: "drama-domain",
        may_use: &[],
        dev_may_use: &[],
        pending: &[],
    },
    CrateRule {
        name: "drama-jobs",
        may_use: &["drama-domain"],
        dev_may_use: &["drama-jobs"],
        pending: &[],
    },
    CrateRule {
        name: "drama-dal",
        may_use: &["drama-domain", "drama-jobs"],
        dev_may_use: &["drama-testkit"],
        pending: &[],
    },
    CrateRule {
        name: "drama-assets",
        may_use: &["drama-domain"],
        dev_may_use: &["drama-testkit"],
        pending: &[],
    },
    CrateRule {
        name: "drama-ai",
        may_use: &["drama-domain"],
        dev_may_use: &[],
        pending: &[],
    },
    CrateRule {
        name: "drama-postgres",
        may_use: &["drama-domain", "drama-dal", "drama-jobs"],
        dev_may_use: &["drama-testkit"],
        pending: &[],
    },
    CrateRule {
        name: "drama-app",
        may_use: &[
            "drama-domain",
            "drama-dal",
            "drama-jobs",
            "drama-assets",
            "drama-ai",
        ],
        dev_may_use: &["drama-testkit", "drama-postgres"],
        pending: &[],
    },
    CrateRule {
        name: "drama-legacy",
        may_use: &["drama-domain", "drama-dal", "drama-assets"],
        dev_may_use: &["drama-testkit", "drama-postgres"],
        pending: &[],
    },
    CrateRule {
        name: "drama-api",
        may_use: &["drama-domain", "drama-app"],
        dev_may_use: &[
            "drama-testkit",
            "drama-postgres",
            "drama-ai",
            "drama-jobs",
            "drama-dal",
            "drama-assets",
        ],
        pending: &[],
    },
    CrateRule {
        name: "drama-testkit",
        may_use: &["drama-domain", "drama-dal", "drama-assets"],
        dev_may_use: &[],
        pending: &[],
    },
    CrateRule {
        name: "drama-server",
        may_use: &[
            "drama-domain",
            "drama-dal",
            "drama-jobs",
            "drama-assets",
            "drama-ai",
            "drama-postgres",
            "drama-app",
            "drama-api",
            "drama-legacy",
        ],
        dev_may_use: &["drama-testkit"],
        pending: &[],
    },
    CrateRule {
        name: "xtask",
        may_use: &[],
        dev_may_use: &[],
        pending: &[],
    },
];

/// Third-party crates fenced into one layer.
pub const EXTERNAL: &[ExternalRule] = &[
    ExternalRule {
        pattern: "sqlx*",
        only: &["drama-postgres", "drama-testkit", "drama-server"],
        why: "only drama-postgres names the database (the testkit makes scratch databases; the binary migrates)",
    },
    ExternalRule {
        pattern: "actix-*",
        only: &["drama-api", "drama-server"],
        why: "the HTTP stack stays at the edge",
    },
    ExternalRule {
        pattern: "juniper*",
        only: &["drama-api"],
        why: "GraphQL is one of the API's two faces",
    },
    ExternalRule {
        pattern: "aws-*",
        only: &["drama-assets"],
        why: "only the asset store knows the S3 SDK",
    },
    ExternalRule {
        pattern: "s3s*",
        only: &["drama-testkit"],
        why: "the in-process S3 server is for tests",
    },
    ExternalRule {
        pattern: "utoipa*",
        only: &["drama-domain", "drama-app", "drama-api"],
        why: "the OpenAPI document is the API's; the domain and the app derive their wire types' schemas only behind their `openapi` feature",
    },
    ExternalRule {
        pattern: "tokio*",
        only: &[
            "drama-jobs",
            "drama-assets",
            "drama-ai",
            "drama-app",
            "drama-api",
            "drama-legacy",
            "drama-testkit",
            "drama-server",
            "drama-postgres",
        ],
        why: "the domain and the repository ports do no I/O of their own",
    },
];

/// Workspace crates nothing may list as a normal dependency.
pub const DEV_ONLY: &[&str] = &["drama-testkit"];
