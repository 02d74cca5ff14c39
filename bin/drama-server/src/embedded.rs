//! A private PostgreSQL cluster for the quick start: with no `DATABASE_URL`, `serve` runs the
//! production code path on a cluster of its own under `DATA_DIR/postgres`, started from the
//! installed server binaries, reachable only on 127.0.0.1 with a password kept beside it, and
//! stopped with the process. Data survives restarts; a cluster left running by a killed
//! process is found and reused.
//!
//! PostgreSQL refuses to run as root: a root process runs the cluster as the `postgres` system
//! user, which then needs to reach `DATA_DIR`.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

/// The database role the cluster is created with.
const ROLE: &str = "drama";

/// What the process keeps about its cluster (in `DATA_DIR/embedded.json`, readable by the
/// owner only): the role's password, and the quick-start user and key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The `drama` role's password.
    pub(crate) password: String,
    /// The quick-start user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<uuid::Uuid>,
    /// Its API key (shown at every start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) api_key: Option<String>,
    /// The key that signs file URLs when `ASSETS_SIGNING_SECRET` is not set, so that URLs
    /// handed out survive a restart like the data they point at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signing_secret: Option<String>,
}

impl State {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("embedded.json")
    }

    fn load(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("{} is not readable", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the state, readable by the owner only, through a temporary file.
    pub(crate) fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_dir);
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// The server binaries.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

impl Binaries {
    /// `initdb` and `pg_ctl` from `PATH`, else the usual install locations (the newest version
    /// first).
    pub(crate) fn find() -> Option<Self> {
        let on_path = |name: &str| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        };
        if let (Some(initdb), Some(pg_ctl)) = (on_path("initdb"), on_path("pg_ctl")) {
            return Some(Self { initdb, pg_ctl });
        }
        let mut dirs: Vec<PathBuf> = ["/usr/lib/postgresql", "/usr/local/pgsql", "/opt/homebrew"]
            .iter()
            .flat_map(|root| {
                std::fs::read_dir(root)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("bin"))
                    .chain(std::iter::once(Path::new(root).join("bin")))
            })
            .collect();
        dirs.sort();
        dirs.reverse();
        dirs.into_iter().find_map(|dir| {
            let (initdb, pg_ctl) = (dir.join("initdb"), dir.join("pg_ctl"));
            (initdb.is_file() && pg_ctl.is_file()).then_some(Self { initdb, pg_ctl })
        })
    }
}

/// Who runs the cluster's processes: this process's user, or (for root) `postgres`.
#[derive(Debug, Clone, Copy)]
struct RunAs(Option<(u32, u32)>);

impl RunAs {
    fn detect(data_dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        // The owner of a directory we just created is who we run as.
        let me = std::fs::metadata(data_dir)?.uid();
        if me != 0 {
            return Ok(Self(None));
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let ids = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        });
        match ids {
            Some(ids) => Ok(Self(Some(ids))),
            None => anyhow::bail!(
                "PostgreSQL does not run as root, and there is no postgres user to run it as \
                 (create one, run the server as another user, or set DATABASE_URL)"
            ),
        }
    }

    fn command(self, program: &Path) -> Command {
        let mut c = Command::new(program);
        if let Some((uid, gid)) = self.0 {
            c.uid(uid).gid(gid);
        }
        c.env_remove("PGDATA")
            .env_remove("PGPORT")
            .env("LC_ALL", "C");
        c
    }

    /// Hands `path` to the cluster's user.
    fn own(self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.0 {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to the postgres user", path.display()))?;
        }
        Ok(())
    }
}

/// A running private cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    binaries: Binaries,
    run_as: RunAs,
    data: PathBuf,
    port: u16,
    /// The connection URL (with the password).
    pub(crate) url: String,
    /// What is kept beside the cluster.
    pub(crate) state: State,
    /// Where it lives.
    pub(crate) dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(probe.local_addr()?.port())
}

/// The port of a running cluster, from its `postmaster.pid` (fourth line).
fn running_port(data: &Path) -> Option<u16> {
    let pid = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    pid.lines().nth(3)?.trim().parse().ok()
}

fn random_text(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Writes `text` to a new file only its owner may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs a PostgreSQL tool to completion; its error output (first lines) on failure.
fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect();
    anyhow::bail!("{what} failed ({}): {}", output.status, said.join(" / "))
}

impl Cluster {
    /// Starts (creating it first if needed) the cluster under `data_dir/postgres`, or finds it
    /// already running.
    pub(crate) fn start(binaries: Binaries, data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let dir = data_dir
            .canonicalize()
            .with_context(|| format!("resolving {}", data_dir.display()))?;
        let data = dir.join("postgres");
        let run_as = RunAs::detect(&dir)?;
        let mut state = match State::load(&dir)? {
            Some(state) => state,
            None if data.join("PG_VERSION").exists() => anyhow::bail!(
                "{} holds a cluster but {} is missing, so its password is unknown; move the \
                 cluster away (or restore the file)",
                data.display(),
                State::path(&dir).display()
            ),
            None => State::default(),
        };
        if !data.join("PG_VERSION").exists() {
            let password = random_text(32);
            std::fs::create_dir_all(&data)?;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
            run_as.own(&data)?;
            // The password goes through a file only the cluster's user can read, removed
            // right after.
            let pwfile = dir.join(".initdb-password");
            write_private(&pwfile, &password)?;
            run_as.own(&pwfile)?;
            let mut initdb = run_as.command(&binaries.initdb);
            initdb
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    ROLE,
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ])
                .arg(format!("--pwfile={}", pwfile.display()));
            let created = run(initdb, "initdb");
            let _ = std::fs::remove_file(&pwfile);
            created.map_err(|e| {
                let _ = std::fs::remove_dir_all(&data);
                e.context(format!(
                    "creating a PostgreSQL cluster in {} (it must be reachable by the user \
                     that runs PostgreSQL)",
                    data.display()
                ))
            })?;
            state.password = password;
        }
        if state.signing_secret.is_none() {
            state.signing_secret = Some(random_text(48));
        }
        state.save(&dir)?;
        let port = match running_port(&data).filter(|_| Self::is_running(&binaries, run_as, &data))
        {
            Some(port) => port,
            None => {
                let port = free_port()?;
                let log = dir.join("postgres.log");
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)?;
                run_as.own(&log)?;
                let mut start = run_as.command(&binaries.pg_ctl);
                start
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "60", "-o"])
                    .arg(format!(
                        "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
                    ))
                    .arg("start");
                run(start, "pg_ctl start").with_context(|| {
                    format!(
                        "starting PostgreSQL in {} (log: {})",
                        data.display(),
                        log.display()
                    )
                })?;
                port
            }
        };
        let url = format!(
            "postgres://{ROLE}:{}@127.0.0.1:{port}/postgres",
            state.password
        );
        Ok(Self {
            binaries,
            run_as,
            data,
            port,
            url,
            state,
            dir,
        })
    }

    fn is_running(binaries: &Binaries, run_as: RunAs, data: &Path) -> bool {
        let mut status = run_as.command(&binaries.pg_ctl);
        status.arg("-D").arg(data).arg("status");
        run(status, "pg_ctl status").is_ok()
    }

    /// The port it listens on (127.0.0.1 only).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Stops the cluster (fast shutdown: sessions are closed, nothing is lost).
    pub(crate) fn stop(&self) {
        let mut stop = self.run_as.command(&self.binaries.pg_ctl);
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        match run(stop, "pg_ctl stop") {
            Ok(()) => tracing::info!(data = %self.data.display(), "embedded PostgreSQL stopped"),
            Err(e) => tracing::warn!(error = %e, "stopping the embedded PostgreSQL failed"),
        }
    }
}
