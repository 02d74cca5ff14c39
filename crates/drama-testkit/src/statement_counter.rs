//! A loopback proxy in front of PostgreSQL that counts statements.
//!
//! It reads the frontend side of the wire protocol: every simple `Query` ('Q') and every
//! extended-protocol `Execute` ('E') message is one statement the server runs. `BEGIN`,
//! `COMMIT` and `ROLLBACK` are counted separately so tests can bound the work inside a
//! transaction. Connect through it with `sslmode=disable`; an encrypted stream cannot be read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default, Debug, Clone)]
struct Counts {
    statements: Vec<String>,
    transaction_control: usize,
}

/// A running counting proxy. Dropping it stops accepting new connections.
pub struct StatementCounter {
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatementCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatementCounter {
    /// Starts a proxy on 127.0.0.1 that forwards to the server of `database_url`.
    pub async fn start(database_url: &str) -> Self {
        let upstream = upstream_addr(database_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, counts).await;
                    }
                });
            }
        });
        Self { addr, counts, task }
    }

    /// `database_url` rewritten to go through the proxy, without TLS.
    pub fn url(&self, database_url: &str) -> String {
        let (scheme, rest) = database_url.split_once("://").unwrap();
        let (auth, after_host) = match rest.rsplit_once('@') {
            Some((auth, host)) => (format!("{auth}@"), host),
            None => (String::new(), rest),
        };
        let path = after_host.find(['/', '?']).map_or("", |i| &after_host[i..]);
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{scheme}://{auth}{}{path}{sep}sslmode=disable", self.addr)
    }

    /// Forgets everything counted so far.
    pub fn reset(&self) {
        let mut c = self.counts.lock().unwrap();
        c.statements.clear();
        c.transaction_control = 0;
    }

    /// Statements run since the last reset, excluding BEGIN/COMMIT/ROLLBACK.
    pub fn statements(&self) -> usize {
        self.counts.lock().unwrap().statements.len()
    }

    /// Their SQL text, for failure messages.
    pub fn statement_sql(&self) -> Vec<String> {
        self.counts.lock().unwrap().statements.clone()
    }

    /// BEGIN/COMMIT/ROLLBACK messages since the last reset.
    pub fn transaction_control(&self) -> usize {
        self.counts.lock().unwrap().transaction_control
    }
}

fn upstream_addr(database_url: &str) -> SocketAddr {
    let rest = database_url.split_once("://").unwrap().1;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host_port = host_port.split(['/', '?']).next().unwrap();
    let (host, port) = host_port
        .rsplit_once(':')
        .map_or((host_port, 5432), |(h, p)| (h, p.parse().unwrap()));
    let host = if host == "localhost" || host.is_empty() {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}").parse().unwrap()
}

async fn relay(client: TcpStream, server: TcpStream, counts: Arc<Mutex<Counts>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let to_client = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut parser = FrontendParser::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        parser.feed(&buf[..n], &counts);
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    to_client.abort();
}

/// Splits the client's byte stream into protocol messages.
#[derive(Default)]
struct FrontendParser {
    pending: Vec<u8>,
    started: bool,
    /// SQL of each prepared statement of this connection, by name ("" is the unnamed one).
    prepared: std::collections::HashMap<String, String>,
    /// SQL of the statement the latest Bind selected; Execute runs it.
    bound_sql: String,
}

impl FrontendParser {
    fn feed(&mut self, bytes: &[u8], counts: &Mutex<Counts>) {
        self.pending.extend_from_slice(bytes);
        loop {
            if !self.started {
                // Untyped startup-phase messages: SSLRequest / GSSENCRequest / StartupMessage.
                if self.pending.len() < 8 {
                    return;
                }
                let len = u32::from_be_bytes(self.pending[0..4].try_into().unwrap()) as usize;
                if self.pending.len() < len {
                    return;
                }
                let code = u32::from_be_bytes(self.pending[4..8].try_into().unwrap());
                // 196608 = protocol 3.0: the real startup message; what follows is typed.
                if code == 196_608 {
                    self.started = true;
                }
                self.pending.drain(..len);
                continue;
            }
            if self.pending.len() < 5 {
                return;
            }
            let tag = self.pending[0];
            let len = u32::from_be_bytes(self.pending[1..5].try_into().unwrap()) as usize;
            if self.pending.len() < 1 + len {
                return;
            }
            let body = self.pending[5..1 + len].to_vec();
            self.pending.drain(..=len);
            match tag {
                b'Q' => record(&mut counts.lock().unwrap(), cstr(&body)),
                b'P' => {
                    // Parse: statement name, then its SQL.
                    let name = cstr(&body);
                    let sql = cstr(&body[name.len() + 1..]);
                    self.prepared.insert(name, sql);
                }
                b'B' => {
                    // Bind: portal name, then the statement name.
                    let portal = cstr(&body);
                    let statement = cstr(&body[portal.len() + 1..]);
                    self.bound_sql = self.prepared.get(&statement).cloned().unwrap_or_default();
                }
                b'E' => record(&mut counts.lock().unwrap(), self.bound_sql.clone()),
                _ => {}
            }
        }
    }
}

fn record(c: &mut Counts, sql: String) {
    let head = sql.trim_start().to_ascii_uppercase();
    if head.starts_with("BEGIN") || head.starts_with("COMMIT") || head.starts_with("ROLLBACK") {
        c.transaction_control += 1;
    } else {
        c.statements.push(sql);
    }
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
