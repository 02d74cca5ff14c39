//! The TCP connections the HTTP server accepts.

use std::any::Any;
use std::time::Duration;

use actix_web::dev::Extensions;

/// What the server runs on each connection it accepts (`HttpServer::on_connect`): the kernel
/// drops a connection whose peer leaves what was sent to it unacknowledged, or keeps its
/// receive window shut, for `after` (`TCP_USER_TIMEOUT`; zero leaves the kernel's own
/// behaviour: some 15 minutes of retransmissions for a peer that acknowledges nothing, and no
/// end at all for a shut window).
///
/// actix has no deadline for writing a response: a client that stops reading (a frozen tab, a
/// peer that advertises a zero window on purpose) would otherwise keep its connection open
/// for as long as it likes, and with it what the response holds (an SSE stream's place among
/// the streams).
pub fn on_connect(after: Duration) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |connection, _| {
        if after.is_zero() {
            return;
        }
        let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        cut_after(tcp, after);
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn cut_after(tcp: &actix_web::rt::net::TcpStream, after: Duration) {
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(after)) {
        // The connection is served all the same, as it would be without the option.
        tracing::debug!(error = %e, "cannot set TCP_USER_TIMEOUT on a connection");
    }
}

/// Elsewhere the option does not exist: the kernel's own timeouts apply.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn cut_after(_: &actix_web::rt::net::TcpStream, _: Duration) {}
