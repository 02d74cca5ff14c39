//! Downloading the files a provider's answer points at, as a stranger's URL deserves: the
//! provider chose it, and a compromised or confused provider could name the cloud metadata
//! service, a database on the private network, or an endless body.
//!
//! - only `https` (and `http` to a loopback address when `DOWNLOAD_ALLOW_LOCAL` is set, for
//!   tests and local mock providers);
//! - every address a name resolves to must be public: loopback (unless allowed), private,
//!   link-local, shared, documentation, multicast and reserved ranges are dropped by the
//!   resolver itself, so the address checked is the address connected to;
//! - at most [`MAX_REDIRECTS`] redirects, each target checked again;
//! - at most `MAX_IMAGE_BYTES` / `MAX_VIDEO_BYTES`, checked against `Content-Length` and while
//!   reading, so an oversized body is never held whole;
//! - no proxy from the environment (it would resolve names where these checks do not run).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::{AiError, Provider};
use crate::settings::AiSettings;

/// Redirects followed per download.
pub const MAX_REDIRECTS: usize = 3;

/// What a downloaded file is, for its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Image,
    Video,
}

/// The client and rules for result files.
#[derive(Debug, Clone)]
pub(crate) struct Downloads {
    client: reqwest::Client,
    pub(crate) timeout: Duration,
    allow_local: bool,
    max_image_bytes: u64,
    max_video_bytes: u64,
}

impl Downloads {
    /// The download rules of `settings`.
    ///
    /// # Errors
    /// [`AiError::Config`] when the client cannot be built.
    pub(crate) fn new(settings: &AiSettings) -> Result<Self, AiError> {
        let allow_local = settings.download_allow_local;
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout())
            .user_agent(concat!("drama-server/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .dns_resolver(PublicOnly { allow_local })
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match check_url(attempt.url(), allow_local) {
                    Ok(()) => attempt.follow(),
                    Err(why) => attempt.error(why),
                }
            }))
            .build()
            .map_err(|e| AiError::Config(format!("cannot build the download client: {e}")))?;
        Ok(Self {
            client,
            timeout: settings.download_timeout(),
            allow_local,
            max_image_bytes: settings.max_image_bytes,
            max_video_bytes: settings.max_video_bytes,
        })
    }

    fn cap(&self, kind: FileKind) -> (u64, &'static str) {
        match kind {
            FileKind::Image => (self.max_image_bytes, "MAX_IMAGE_BYTES"),
            FileKind::Video => (self.max_video_bytes, "MAX_VIDEO_BYTES"),
        }
    }

    /// One attempt at `url`: the status, headers and body (or the transport's error), or
    /// why the URL or body is refused ([`AiError::FileRefused`]).
    pub(crate) async fn get(
        &self,
        provider: Provider,
        url: &str,
        kind: FileKind,
    ) -> Result<
        Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Bytes), reqwest::Error>,
        AiError,
    > {
        let refused = |message: String| AiError::FileRefused { provider, message };
        let parsed = Url::parse(url)
            .map_err(|e| refused(format!("the file URL {url:?} is not a URL: {e}")))?;
        check_url(&parsed, self.allow_local)
            .map_err(|why| refused(format!("the file URL {url:?} is refused: {why}")))?;
        let mut response = match self.client.get(parsed).timeout(self.timeout).send().await {
            Ok(response) => response,
            // A refused redirect or address is the answer's fault, not the network's.
            Err(e) if e.is_redirect() || is_refusal(&e) => {
                return Err(refused(format!(
                    "the file URL {url:?} is refused: {}",
                    super::error_chain(&e)
                )));
            }
            Err(e) => return Ok(Err(e)),
        };
        let (cap, setting) = self.cap(kind);
        let too_large = || {
            refused(format!(
                "the file at {url} is larger than {setting} ({cap} bytes)"
            ))
        };
        if response.content_length().is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = BytesMut::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > cap {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok((status, headers, body.freeze())))
    }
}

/// Whether a connection failed because the resolver refused every address.
fn is_refusal(e: &reqwest::Error) -> bool {
    super::error_chain(e).contains(REFUSED_ADDRESS)
}

const REFUSED_ADDRESS: &str = "resolves to no public address";

/// Checks a URL before it is requested (the first one and every redirect).
///
/// # Errors
/// Why the URL is refused.
pub(crate) fn check_url(url: &Url, allow_local: bool) -> Result<(), String> {
    let host = url.host_str().ok_or_else(|| "it has no host".to_owned())?;
    // An IPv6 literal comes bracketed.
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let local = ip.is_some_and(|ip| ip.is_loopback()) || host.eq_ignore_ascii_case("localhost");
    if let Some(ip) = ip
        && !allowed(ip, allow_local)
    {
        return Err(format!("{ip} is not a public address"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_local && local => Ok(()),
        other => Err(format!("scheme {other} (only https is fetched)")),
    }
}

/// Whether a connection to `ip` is allowed.
fn allowed(ip: IpAddr, allow_local: bool) -> bool {
    is_public(ip) || allow_local && ip.is_loopback()
}

/// Whether `ip` is a globally routable unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || a == 100 && (64..128).contains(&b)
        // IETF protocol assignments, 192.0.0.0/24.
        || a == 192 && b == 0 && c == 0
        // Benchmarking, 198.18.0.0/15.
        || a == 198 && (18..20).contains(&b)
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local, fc00::/7.
        || first & 0xfe00 == 0xfc00
        // Link-local, fe80::/10.
        || first & 0xffc0 == 0xfe80
        // Documentation, 2001:db8::/32.
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        // IPv4-compatible and NAT64 forms of any IPv4 address are not checked here: refused.
        || first == 0
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// A resolver that keeps only the addresses a download may connect to.
struct PublicOnly {
    allow_local: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.allow_local;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| allowed(a.ip(), allow_local))
                .collect();
            if kept.is_empty() {
                return Err(format!("{host} {REFUSED_ADDRESS}").into());
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

impl std::fmt::Debug for PublicOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicOnly")
            .field("allow_local", &self.allow_local)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_https_to_public_addresses() {
        assert!(check_url(&url("https://cdn.example.com/a.png"), false).is_ok());
        assert!(check_url(&url("https://93.184.216.34/a.png"), false).is_ok());
        for refused in [
            "http://cdn.example.com/a.png",
            "ftp://cdn.example.com/a.png",
            "file:///etc/passwd",
            "https://127.0.0.1/a.png",
            "https://10.1.2.3/a.png",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/a.png",
            "https://[fd00::1]/a.png",
            "https://[::ffff:192.168.1.1]/a.png",
            "https://100.64.0.1/a.png",
            "https://0.0.0.0/a.png",
            "http://localhost:8080/a.png",
        ] {
            assert!(check_url(&url(refused), false).is_err(), "{refused}");
        }
    }

    #[test]
    fn allowing_local_permits_loopback_only() {
        assert!(check_url(&url("http://127.0.0.1:9000/a.png"), true).is_ok());
        assert!(check_url(&url("http://localhost:9000/a.png"), true).is_ok());
        for refused in [
            "http://10.0.0.1/a.png",
            "http://169.254.169.254/latest/meta-data/",
            "http://cdn.example.com/a.png",
        ] {
            assert!(check_url(&url(refused), true).is_err(), "{refused}");
        }
    }
}
