//! Request rates: keyed limiters that forget idle keys, and the client address a request
//! without credentials is counted under.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use actix_web::HttpRequest;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::state::ForwardedHeader;

/// Checks between two sweeps of idle keys. A sweep walks every key, so its cost spread over
/// this many checks stays a few key visits per check while the map holds only keys heard
/// from within about one refill of the burst.
const SWEEP_EVERY: u32 = 1024;

/// A rate per key (a user, a client address) that does not grow with every key ever seen:
/// keys whose bucket is full again are dropped now and then (a dropped key starts full, so
/// dropping it changes nothing for it).
pub(crate) struct KeyedRate<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU32,
}

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    /// `per_second` steady, `burst` above it (at least the rate); `None` when the rate is 0
    /// (limiting off).
    pub(crate) fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            checks: AtomicU32::new(0),
        })
    }

    /// Counts one request of `key`.
    ///
    /// # Errors
    /// How long `key` must wait before its next request is allowed.
    pub(crate) fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Keys held (those heard from since the last sweep, and those still waiting).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// The address a request without credentials is counted under: the connection's peer, or,
/// behind a proxy (`trusted`: the header it writes), the address that proxy saw — the last
/// entry of that header, the one the proxy itself appended (entries before it, and the other
/// header, are whatever the client sent). An IPv6 address counts as its /64: one subscriber
/// usually holds a whole /64 and could otherwise take a fresh address, with a fresh burst,
/// per request.
pub(crate) fn client_key(req: &HttpRequest, trusted: Option<ForwardedHeader>) -> Option<IpAddr> {
    let forwarded = trusted.and_then(|header| last_forwarded(req, header));
    let address = forwarded.or_else(|| req.peer_addr().map(|a| a.ip()))?;
    Some(counted_as(address))
}

/// The last address of `header` (for `Forwarded`, its last `for=`), over all its lines.
fn last_forwarded(req: &HttpRequest, header: ForwardedHeader) -> Option<IpAddr> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let entry = req
        .headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|e| !e.is_empty())?;
    let address = match header {
        ForwardedHeader::XForwardedFor => entry,
        ForwardedHeader::Forwarded => entry
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
            .map(|(_, v)| v.trim().trim_matches('"'))?,
    };
    parse_ip(address)
}

/// An address as proxies write it (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`).
fn parse_ip(address: &str) -> Option<IpAddr> {
    address
        .parse::<IpAddr>()
        .ok()
        .or_else(|| address.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            address
                .trim_start_matches('[')
                .split(']')
                .next()
                .and_then(|a| a.parse().ok())
        })
}

/// IPv4 as it is (also when written as IPv6); IPv6 cut to its /64.
fn counted_as(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use actix_web::test::TestRequest;

    use super::*;

    fn key(req: TestRequest, trusted: Option<ForwardedHeader>) -> Option<String> {
        client_key(&req.to_http_request(), trusted).map(|a| a.to_string())
    }

    const XFF: Option<ForwardedHeader> = Some(ForwardedHeader::XForwardedFor);
    const STANDARD: Option<ForwardedHeader> = Some(ForwardedHeader::Forwarded);

    #[test]
    fn a_proxy_counts_the_address_it_appended_not_what_the_client_wrote() {
        let peer = "10.0.0.9:443".parse().unwrap();
        let spoofed = TestRequest::default()
            .peer_addr(peer)
            .insert_header(("x-forwarded-for", "203.0.113.7, 198.51.100.4"));
        assert_eq!(key(spoofed, XFF).as_deref(), Some("198.51.100.4"));
        let two_lines = TestRequest::default()
            .peer_addr(peer)
            .append_header(("x-forwarded-for", "203.0.113.7"))
            .append_header(("x-forwarded-for", "198.51.100.5"));
        assert_eq!(key(two_lines, XFF).as_deref(), Some("198.51.100.5"));
        // The header the proxy does not write is the client's: never read.
        let other_header = || {
            TestRequest::default()
                .peer_addr(peer)
                .insert_header(("x-forwarded-for", "198.51.100.4"))
                .insert_header(("forwarded", "for=203.0.113.9"))
        };
        assert_eq!(key(other_header(), XFF).as_deref(), Some("198.51.100.4"));
        assert_eq!(
            key(other_header(), STANDARD).as_deref(),
            Some("203.0.113.9")
        );
        let standard = TestRequest::default().peer_addr(peer).insert_header((
            "forwarded",
            "for=203.0.113.7, for=\"[2001:db8:1:2:3::4]:8080\";proto=https",
        ));
        assert_eq!(key(standard, STANDARD).as_deref(), Some("2001:db8:1:2::"));
        // Not trusted: the connection's address, whatever the headers say.
        let direct = TestRequest::default()
            .peer_addr(peer)
            .insert_header(("x-forwarded-for", "203.0.113.7"));
        assert_eq!(key(direct, None).as_deref(), Some("10.0.0.9"));
        // A proxy that wrote nothing usable: the connection's address.
        let junk = TestRequest::default()
            .peer_addr(peer)
            .insert_header(("x-forwarded-for", "unknown"));
        assert_eq!(key(junk, XFF).as_deref(), Some("10.0.0.9"));
        assert_eq!(key(TestRequest::default(), None), None);
    }

    #[test]
    fn an_ipv6_client_counts_as_its_64() {
        let a = TestRequest::default().peer_addr("[2001:db8:aa:bb:1::1]:5000".parse().unwrap());
        let b = TestRequest::default().peer_addr("[2001:db8:aa:bb:ffff::2]:5000".parse().unwrap());
        assert_eq!(key(a, None), key(b, None));
        let mapped = TestRequest::default().peer_addr("[::ffff:192.0.2.1]:80".parse().unwrap());
        assert_eq!(key(mapped, None).as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn idle_keys_are_forgotten_and_busy_ones_kept() {
        // A bucket that is full again a millisecond after its one request.
        let rate = KeyedRate::<u32>::new(1000, 1).unwrap();
        for k in 0..5_000 {
            rate.check(&k).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..SWEEP_EVERY {
            let _ = rate.check(&u32::MAX);
        }
        assert!(rate.len() <= 2, "{}", rate.len());
        // A key still waiting stays: forgetting it would give it a fresh burst.
        let slow = KeyedRate::<u32>::new(1, 1).unwrap();
        slow.check(&7).unwrap();
        for k in 0..SWEEP_EVERY {
            let _ = slow.check(&(k + 100));
        }
        assert!(slow.check(&7).is_err());
    }
}
