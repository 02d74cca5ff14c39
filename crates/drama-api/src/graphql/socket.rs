//! `GET /subscriptions`: GraphQL over WebSocket (`graphql-transport-ws`, or the legacy
//! `graphql-ws` when the client asks for it), with the bounds of a POST.
//!
//! juniper's connection runs the protocol; the frames pass through a gate first, because an
//! operation sent over a socket must cost what the same operation posted costs:
//!
//! - `connection_init` must come within `http.ws_init_timeout`, else the socket is closed with
//!   4408, so a silent socket holds nothing for long; the sockets waiting for it are capped,
//!   per client address and in all (503 past a cap);
//! - the credentials of `connection_init` are checked here, before juniper sees the message
//!   (browsers cannot set headers on a WebSocket, so they come in its payload:
//!   `{"authorization": "Bearer …"}` or `{"x-api-key": …}`); a refused one costs the client's
//!   anonymous rate as failed credentials over HTTP do (over it: 4403 with the rate's message);
//! - every `subscribe` (`start`) counts against the caller's rate, like a request, and is priced
//!   against the GraphQL limits, then normalised for the old clients as a POST's operation is
//!   (`compat`); a refused one gets an `error` message for its id (code `rate_limited`, the
//!   limit's code, or `BAD_USER_INPUT`) and the socket stays open;
//! - a query or mutation still running after `http.request_timeout` is stopped and answered
//!   with an `error` (code `unavailable`), as a POST would be with 503. Subscriptions are
//!   long-lived by nature and bounded by the stream caps instead;
//! - the credentials are asked about again every `http.stream_auth_interval` and at their
//!   expiry; once they are refused (a revoked key, an expired token) the socket is closed with
//!   4403 and the reason;
//! - an initialised socket holds a place among its caller's streams (the caps of SSE), which
//!   its first subscription runs on, so idle sockets are bounded as streams are; a
//!   `connection_init` over a cap closes the socket with 1013 and the cap's message;
//! - an initialised socket that runs no subscription and starts no operation for
//!   `http.ws_idle_timeout` is closed with 1000, so forgotten sockets do not hold their
//!   places among the streams for as long as their credentials last;
//! - what goes to the client waits in one bounded queue; while it is full the client's frames
//!   are not read (backpressure), so a client that sends and never reads holds a queue's
//!   worth of answers, not an ever-growing one.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use drama_app::Caller;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{Sink, SinkExt as _, Stream, StreamExt as _};
use juniper::http::GraphQLRequest;
use juniper::{DefaultScalarValue, Definition, OperationType, Variables};
use juniper_graphql_ws::{ArcSchema, ConnectionConfig, graphql_transport_ws, graphql_ws};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::context::Ctx;
use super::limits;
use crate::auth::{AuthError, Authenticated};
use crate::error::{Chain, ErrorCode};
use crate::lapse::{Credentials, lapsed};
use crate::media_links::{NamedOwners, sign_text};
use crate::realtime::{SocketPlace, WaitingSocket};
use crate::state::{ANONYMOUS_LIMITED, ApiState, AuthRefusal};

/// The close code for a socket that did not send `connection_init` in time (the code
/// graphql-transport-ws defines for it).
pub const INIT_TIMEOUT_CLOSE: u16 = 4408;

/// The close code for a socket whose `connection_init` would pass a stream cap: 1013, "Try
/// Again Later" (RFC 6455), a temporary condition. The protocol's own 4429 means a repeated
/// `connection_init`, and clients (graphql-ws among them) give up on it for good; on 1013
/// they retry later, as `Retry-After` asks an SSE client to. The reason is the cap's message.
pub const TOO_MANY_STREAMS_CLOSE: u16 = 1013;

/// The close code for a socket whose credentials stopped being accepted after
/// `connection_init` (a revoked or expired API key, an expired token): 4403, "Forbidden",
/// the code the protocol closes with when `connection_init` is refused. The reason says why.
pub const CREDENTIALS_LAPSED_CLOSE: u16 = 4403;

/// Frames waiting for the client at most (the gate's answers and juniper's). A client that
/// sends faster than it reads (pings, refused operations, anything juniper answers) is not
/// read any further while the queue is full: its frames wait in the connection's buffers
/// and then in its own, and the socket stays open for it to catch up (backpressure; one that
/// takes nothing for `http.dead_peer_timeout` loses its connection). Closing at once would cut
/// off slow but honest clients on a bad network; pausing costs nothing but the socket's place.
const OUTGOING_QUEUE: usize = 64;

/// The close code for an initialised socket that ran no subscription and started no
/// operation for `http.ws_idle_timeout`: 1000, "Normal Closure" (RFC 6455), as the socket has
/// nothing left to do. Clients reconnect when they next subscribe (graphql-ws reconnects at
/// once only when it has subscriptions to resume). The reason says how long it was idle.
pub const IDLE_CLOSE: u16 = 1000;

/// The close code for a socket open when the server starts to stop: 1001, "Going Away"
/// (RFC 6455). Clients reconnect (to a server that runs) and subscribe again.
pub const GOING_AWAY_CLOSE: u16 = 1001;

/// How long a socket the server closes has to send its close frame: a client that reads
/// nothing would otherwise keep a closed socket open. Past it the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why a WebSocket was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// The outcome of `connection_init`, handed from the gate to juniper's init: the caller and
/// the socket's place among the streams, or why it was refused.
type Slot = Arc<Mutex<Option<Result<(Caller, Arc<SocketPlace>), String>>>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws`.
    Transport,
    /// The legacy `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Self::Transport => "graphql-transport-ws",
            Self::Legacy => "graphql-ws",
        }
    }

    /// The message type that starts an operation.
    fn start(self) -> &'static str {
        match self {
            Self::Transport => "subscribe",
            Self::Legacy => "start",
        }
    }

    /// The client message that stops operation `id`.
    fn stop(self, id: &str) -> Incoming {
        let kind = match self {
            Self::Transport => "complete",
            Self::Legacy => "stop",
        };
        Incoming::Text(json!({"type": kind, "id": id}).to_string())
    }

    /// The server message that ends operation `id` with an error.
    fn error(self, id: &str, refusal: &Refusal) -> Value {
        let error = json!({"message": refusal.message, "extensions": refusal.extensions});
        match self {
            Self::Transport => json!({"type": "error", "id": id, "payload": [error]}),
            Self::Legacy => json!({"type": "error", "id": id, "payload": error}),
        }
    }
}

/// A client frame on its way to juniper.
enum Incoming {
    Text(String),
    Close,
}

impl TryFrom<Incoming> for graphql_transport_ws::Input<DefaultScalarValue> {
    type Error = serde_json::Error;

    fn try_from(incoming: Incoming) -> Result<Self, Self::Error> {
        match incoming {
            Incoming::Text(text) => serde_json::from_str(&text).map(Self::Message),
            Incoming::Close => Ok(Self::Close),
        }
    }
}

impl TryFrom<Incoming> for graphql_ws::ClientMessage<DefaultScalarValue> {
    type Error = serde_json::Error;

    fn try_from(incoming: Incoming) -> Result<Self, Self::Error> {
        match incoming {
            Incoming::Text(text) => serde_json::from_str(&text),
            Incoming::Close => Ok(Self::ConnectionTerminate),
        }
    }
}

/// A frame for the client.
enum Outgoing {
    Message(Value),
    Pong(bytes::Bytes),
    Close(u16, String),
    /// juniper is done: the socket closes normally.
    End,
}

impl From<graphql_transport_ws::Output<DefaultScalarValue>> for Outgoing {
    fn from(output: graphql_transport_ws::Output<DefaultScalarValue>) -> Self {
        match output {
            graphql_transport_ws::Output::Message(message) => serialized(&message),
            graphql_transport_ws::Output::Close { code, message } => Self::Close(code, message),
        }
    }
}

impl From<graphql_ws::ServerMessage<DefaultScalarValue>> for Outgoing {
    fn from(message: graphql_ws::ServerMessage<DefaultScalarValue>) -> Self {
        serialized(&message)
    }
}

fn serialized(message: &impl serde::Serialize) -> Outgoing {
    match serde_json::to_value(message) {
        Ok(mut value) => {
            // An `error` message answers an operation that never started: a document the
            // schema refused (coded as a POST's errors are), or a refusal with its own code.
            if value["type"] == "error" {
                match &mut value["payload"] {
                    Value::Array(errors) => super::mark_refused(errors),
                    error @ Value::Object(_) => super::mark_refused(std::slice::from_mut(error)),
                    _ => {}
                }
            }
            Outgoing::Message(value)
        }
        Err(e) => Outgoing::Close(1011, format!("error serializing a response: {e}")),
    }
}

/// Why an operation was not started.
struct Refusal {
    message: String,
    extensions: Value,
}

/// `GET /subscriptions`.
pub(crate) async fn websocket(
    state: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let state: Arc<ApiState> = state.into_inner();
    let protocol = if req
        .headers()
        .get("sec-websocket-protocol")
        .is_some_and(|v| v.as_bytes() == b"graphql-ws")
    {
        Protocol::Legacy
    } else {
        Protocol::Transport
    };
    let client = state.client_address(&req);
    let waiting = state
        .realtime
        .socket_waiting(client)
        .map_err(|refused| crate::error::ApiError::message(ErrorCode::Unavailable, refused))?;
    let (mut response, session, messages) = actix_ws::handle(&req, body)?;
    let messages = messages.aggregate_continuations();
    let slot: Slot = Arc::default();
    let named = NamedOwners::default();
    let init = {
        let (state, slot, named) = (state.clone(), slot.clone(), named.clone());
        move |_: Variables| {
            let outcome = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            async move {
                let (caller, place) = outcome
                    .unwrap_or_else(|| Err("no credentials".to_owned()))
                    .map_err(Refused)?;
                let ctx = Ctx::new(state.app().clone(), caller, state.realtime.clone())
                    .with_legacy_user(state.legacy_user)
                    .naming_into(named.clone())
                    .on_socket(place);
                Ok::<_, Refused>(
                    ConnectionConfig::new(ctx)
                        .with_keep_alive_interval(Duration::from_secs(15))
                        // The protocol does not oblige clients to ping (most do not by
                        // default); with a timeout, every subscription longer than it would be
                        // cut off. A vanished client is noticed when a keep-alive write fails.
                        .with_keep_alive_timeout(Duration::ZERO)
                        .with_max_in_flight_operations(16),
                )
            }
        }
    };
    let schema = ArcSchema(state.schema.clone());
    let gate = Gate {
        state,
        protocol,
        slot,
        running: Arc::default(),
        stopped: Arc::default(),
        caller: Arc::default(),
        named,
        client,
        waiting: Mutex::new(Some(waiting)),
    };
    match protocol {
        Protocol::Transport => {
            let (tx, rx) = graphql_transport_ws::Connection::new(schema, init).split();
            actix_web::rt::spawn(gate.serve(session, messages, tx, rx));
        }
        Protocol::Legacy => {
            let (tx, rx) = graphql_ws::Connection::new(schema, init).split();
            actix_web::rt::spawn(gate.serve(session, messages, tx, rx));
        }
    }
    response.headers_mut().insert(
        HeaderName::from_static("sec-websocket-protocol"),
        HeaderValue::from_static(protocol.name()),
    );
    Ok(response)
}

/// One socket's gate between the client and juniper.
struct Gate {
    state: Arc<ApiState>,
    protocol: Protocol,
    slot: Slot,
    /// Queries and mutations started and not yet answered, by id.
    running: Arc<Mutex<HashSet<String>>>,
    /// Operations the gate stopped at the deadline (and answered with an error): what juniper
    /// still sends for them is not passed on, so the client sees one end per operation.
    stopped: Arc<Mutex<HashSet<String>>>,
    /// The authenticated caller, whose media URLs the outgoing messages carry signed.
    caller: Arc<OnceLock<Caller>>,
    /// The users a service caller named on this socket (`userId`): once it named any, only
    /// their media URLs leave signed.
    named: NamedOwners,
    /// The client's address, which a refused `connection_init` is counted under.
    client: Option<IpAddr>,
    /// The socket's place among those waiting for their `connection_init`, held until it
    /// comes (or the socket ends).
    waiting: Mutex<Option<WaitingSocket>>,
}

impl Gate {
    async fn serve<Tx, Rx, O>(
        self,
        session: Session,
        messages: AggregatedMessageStream,
        juniper_tx: Tx,
        juniper_rx: Rx,
    ) where
        Tx: Sink<Incoming, Error = Infallible> + Unpin,
        Rx: Stream<Item = O> + Unpin,
        Outgoing: From<O>,
    {
        let (queue, queued) = mpsc::channel(OUTGOING_QUEUE);
        // Closing the socket does not wait behind a full queue.
        let (closer, closes) = mpsc::channel(1);
        let input = std::pin::pin!(self.input(messages, juniper_tx, queue.clone(), closer));
        let pump = std::pin::pin!(self.pump(juniper_rx, queue));
        let output = std::pin::pin!(self.output(session, queued, closes));
        // Either side ending ends the socket: the client went away, or the server closed it.
        futures::future::select(input, futures::future::select(pump, output)).await;
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Has the socket closed with `code` and `reason`; returns once the close had its time,
    /// which drops the connection if the client did not take the close frame.
    async fn close(&self, closer: &mpsc::Sender<(u16, String)>, code: u16, reason: String) {
        // Full only when a close is already on its way.
        let _ = closer.try_send((code, reason));
        tokio::time::sleep(CLOSE_GRACE).await;
    }

    /// Client frames to juniper, through the gate. A frame is read only while the outgoing
    /// queue has a place kept for what the gate may answer to it and another free for what
    /// juniper may: a client that does not read stops being read once the queue is full.
    async fn input<M, Tx>(
        &self,
        mut messages: M,
        mut juniper: Tx,
        queue: mpsc::Sender<Outgoing>,
        closer: mpsc::Sender<(u16, String)>,
    ) where
        M: Stream<Item = Result<AggregatedMessage, ProtocolError>> + Unpin,
        Tx: Sink<Incoming, Error = Infallible> + Unpin,
    {
        let init_wait = tokio::time::sleep(self.state.settings.ws_init_timeout);
        tokio::pin!(init_wait);
        let mut initialised = false;
        let mut caller: Option<Caller> = None;
        let mut deadlines: FuturesUnordered<BoxFuture<'static, String>> = FuturesUnordered::new();
        // A place in the outgoing queue, taken before the next frame is read.
        let mut room: Option<mpsc::Permit<'_, Outgoing>> = None;
        // Resolves once the credentials of `connection_init` are no longer accepted.
        let mut lapse: BoxFuture<'static, String> = Box::pin(std::future::pending());
        // The place an initialised socket holds, and when it next asks whether it is idle.
        let mut holding: Option<Arc<SocketPlace>> = None;
        let idle_check = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(idle_check);
        let mut last_start = tokio::time::Instant::now();
        let stopping = self.state.stopping();
        tokio::pin!(stopping);
        loop {
            let open = room.is_some() && queue.capacity() > 0;
            let incoming = tokio::select! {
                () = &mut stopping => {
                    let reason = "The server is stopping".to_owned();
                    return self.close(&closer, GOING_AWAY_CLOSE, reason).await;
                }
                () = &mut init_wait, if !initialised => {
                    let reason = "Connection initialisation timeout".to_owned();
                    return self.close(&closer, INIT_TIMEOUT_CLOSE, reason).await;
                }
                reason = &mut lapse => {
                    let reason = format!("Credentials no longer accepted: {reason}");
                    return self.close(&closer, CREDENTIALS_LAPSED_CLOSE, reason).await;
                }
                () = &mut idle_check, if holding.is_some() => {
                    let left = holding.as_deref().and_then(|p| self.idle_left(p, last_start));
                    match left {
                        Some(left) => {
                            idle_check.as_mut().reset(tokio::time::Instant::now() + left);
                            continue;
                        }
                        None => {
                            let seconds = self.state.settings.ws_idle_timeout.as_secs_f64();
                            let reason = format!("Idle for {seconds} s without a subscription");
                            return self.close(&closer, IDLE_CLOSE, reason).await;
                        }
                    }
                }
                reserved = queue.reserve(), if !open => match reserved {
                    Ok(place) => {
                        // With a place kept already, this one only says the queue has room
                        // again; giving it back lets juniper's answers take it.
                        if room.is_none() {
                            room = Some(place);
                        }
                        continue;
                    }
                    // The output side is gone, and the socket with it.
                    Err(_) => return,
                },
                Some(id) = deadlines.next(), if open => match self.expire(&id, &mut room) {
                    Some(stop) => stop,
                    None => continue,
                },
                message = messages.next(), if open => match message {
                    Some(Ok(AggregatedMessage::Text(text))) => Incoming::Text(text.to_string()),
                    Some(Ok(AggregatedMessage::Binary(bytes))) => {
                        Incoming::Text(String::from_utf8_lossy(&bytes).into_owned())
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if let Some(place) = room.take() {
                            place.send(Outgoing::Pong(bytes));
                        }
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Close(_))) => Incoming::Close,
                    Some(Err(_)) | None => return,
                },
            };
            // The frame juniper gets instead, when the gate rewrote the operation.
            let mut rewritten = None;
            if let Incoming::Text(text) = &incoming {
                let mut parsed: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                let kind = parsed["type"].as_str().unwrap_or_default();
                if kind == "connection_init" && !initialised {
                    initialised = true;
                    drop(
                        self.waiting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .take(),
                    );
                    match self.initialise(&parsed["payload"]).await {
                        Ok(Some((known, until, held))) => {
                            caller = Some(known);
                            lapse = until;
                            if !self.state.settings.ws_idle_timeout.is_zero() {
                                holding = Some(held);
                                let idle = self.state.settings.ws_idle_timeout;
                                idle_check
                                    .as_mut()
                                    .reset(tokio::time::Instant::now() + idle);
                            }
                        }
                        Ok(None) => {}
                        Err(over) => {
                            return self.close(&closer, TOO_MANY_STREAMS_CLOSE, over).await;
                        }
                    }
                } else if kind == self.protocol.start()
                    && let (Some(caller), Some(id)) =
                        (caller, parsed["id"].as_str().map(str::to_owned))
                {
                    // A new operation under the id of a stopped one is the client's again.
                    self.stopped().remove(&id);
                    match self.admit(&caller, &mut parsed["payload"]) {
                        Err(refusal) => {
                            if let Some(place) = room.take() {
                                place.send(Outgoing::Message(self.protocol.error(&id, &refusal)));
                            }
                            continue;
                        }
                        Ok(true) => deadlines.push(self.watch(&id)),
                        Ok(false) => {}
                    }
                    rewritten = Some(Incoming::Text(parsed.to_string()));
                    last_start = tokio::time::Instant::now();
                }
            }
            let incoming = rewritten.unwrap_or(incoming);
            if juniper.send(incoming).await.is_err() {
                return;
            }
            // Let juniper's answer reach the queue before the next frame is read, so that a
            // full queue is seen before juniper holds more answers than the queue would.
            tokio::task::yield_now().await;
        }
    }

    /// `connection_init`: authenticates its payload and hands juniper the outcome. An accepted
    /// socket holds a place among the caller's streams from now on, idle or not, and lasts as
    /// long as its credentials (or until it is idle too long): the caller, what resolves when
    /// they lapse, and the place (which knows whether subscriptions run). `Ok(None)` when
    /// the credentials are refused (juniper answers that); `Err` with the reason to close
    /// when the caller has no stream place left.
    async fn initialise(
        &self,
        payload: &Value,
    ) -> Result<Option<(Caller, BoxFuture<'static, String>, Arc<SocketPlace>)>, String> {
        let (outcome, credentials) = self.authenticate(payload).await;
        let (outcome, accepted) = match outcome {
            Ok(known) => {
                let permit = self
                    .state
                    .realtime
                    .open_stream(known.caller.user)
                    .map_err(|over| over.to_string())?;
                let (state, caller) = (self.state.clone(), known.caller);
                let until: BoxFuture<'static, String> =
                    Box::pin(lapsed(state, credentials, caller, known.until));
                let _ = self.caller.set(caller);
                let place = SocketPlace::new(permit);
                (Ok((caller, place.clone())), Some((caller, until, place)))
            }
            Err(refused) => (Err(refused), None),
        };
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        Ok(accepted)
    }

    /// How long an initialised socket holding `place` may still wait before it counts as
    /// idle (`http.ws_idle_timeout` without a subscription running on it, a query or mutation
    /// running, or an operation started since `last_start`); `None` once it does.
    fn idle_left(&self, place: &SocketPlace, last_start: tokio::time::Instant) -> Option<Duration> {
        let limit = self.state.settings.ws_idle_timeout;
        if !self.running().is_empty() {
            return Some(limit);
        }
        let Some(idle) = place.idle_for() else {
            return Some(limit);
        };
        let idle = idle.min(last_start.elapsed());
        limit.checked_sub(idle).filter(|left| !left.is_zero())
    }

    /// Starts the clock of an admitted query or mutation: what resolves with its id at the
    /// request timeout.
    fn watch(&self, id: &str) -> BoxFuture<'static, String> {
        self.running().insert(id.to_owned());
        let (id, wait) = (id.to_owned(), self.state.settings.request_timeout);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            id
        })
    }

    /// An operation's deadline passed: if it is still running, the client gets its error now
    /// and juniper the stop to pass on (`None`: it ended in time, nothing to do).
    fn expire(&self, id: &str, room: &mut Option<mpsc::Permit<'_, Outgoing>>) -> Option<Incoming> {
        if !self.running().remove(id) {
            return None;
        }
        self.stopped().insert(id.to_owned());
        let seconds = self.state.settings.request_timeout.as_secs();
        let refusal = Refusal {
            message: format!("The operation took longer than {seconds} s"),
            extensions: json!({"code": ErrorCode::Unavailable.graphql()}),
        };
        if let Some(place) = room.take() {
            place.send(Outgoing::Message(self.protocol.error(id, &refusal)));
        }
        Some(self.protocol.stop(id))
    }

    /// juniper's answers into the outgoing queue, waiting while it is full (juniper's own
    /// reactions are then held in juniper, and the input side reads nothing more).
    async fn pump<Rx, O>(&self, mut juniper: Rx, queue: mpsc::Sender<Outgoing>)
    where
        Rx: Stream<Item = O> + Unpin,
        Outgoing: From<O>,
    {
        while let Some(output) = juniper.next().await {
            let outgoing = Outgoing::from(output);
            if let Outgoing::Message(message) = &outgoing
                && let Some(id) = message["id"].as_str()
            {
                let ends = matches!(message["type"].as_str(), Some("complete" | "error"));
                if ends {
                    self.running().remove(id);
                }
                let mut stopped = self.stopped();
                if stopped.contains(id) {
                    if ends {
                        stopped.remove(id);
                    }
                    continue;
                }
            }
            if queue.send(outgoing).await.is_err() {
                return;
            }
        }
        let _ = queue.send(Outgoing::End).await;
        // The output side closes the socket, which ends this future with it.
        std::future::pending::<()>().await;
    }

    /// The outgoing queue to the client; a close asked for by the input side goes first.
    async fn output(
        &self,
        mut session: Session,
        mut queued: mpsc::Receiver<Outgoing>,
        mut closes: mpsc::Receiver<(u16, String)>,
    ) {
        loop {
            let outgoing = tokio::select! {
                biased;
                Some((code, reason)) = closes.recv() => Outgoing::Close(code, reason),
                Some(outgoing) = queued.recv() => outgoing,
                else => return,
            };
            let sent = match outgoing {
                Outgoing::Message(message) => {
                    let text = message.to_string();
                    // Payloads carry media URLs as stored; they leave loadable, as in a POST's
                    // answer (the middleware that signs those never sees socket messages).
                    let text = match self.caller.get() {
                        Some(caller) => {
                            sign_text(&self.state, *caller, Some(&self.named), text).await
                        }
                        None => text,
                    };
                    session.text(text).await
                }
                Outgoing::Pong(bytes) => session.pong(&bytes).await,
                Outgoing::Close(code, message) => {
                    let _ = session
                        .close(Some(CloseReason {
                            code: CloseCode::from(code),
                            description: Some(message),
                        }))
                        .await;
                    return;
                }
                Outgoing::End => {
                    let _ = session.close(Some(CloseCode::Normal.into())).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// The caller of a `connection_init` payload, and the credentials to ask about again.
    async fn authenticate(&self, payload: &Value) -> (Result<Authenticated, String>, Credentials) {
        let credential = |name: &str| {
            payload.as_object().and_then(|fields| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str())
            })
        };
        let (authorization, api_key) = (credential("authorization"), credential("x-api-key"));
        // A refused `connection_init` costs the client's anonymous rate, as a request with
        // failed credentials does.
        let outcome = self
            .state
            .authenticate_from(authorization, api_key, self.client)
            .await
            .map_err(|refused| match refused {
                // The socket's refusal is the boundary: nothing else logs this failure.
                AuthRefusal::Credentials(e @ AuthError::Unavailable(_)) => {
                    tracing::error!(error = %Chain(&e), "WebSocket authentication failed");
                    e.to_string()
                }
                AuthRefusal::Credentials(e) => e.to_string(),
                AuthRefusal::OverAnonymousRate(_) => ANONYMOUS_LIMITED.to_owned(),
            });
        (outcome, Credentials::new(authorization, api_key))
    }

    /// Counts an operation against the caller's rate, prices it, and normalises it for the
    /// old clients in `payload` as a POST's operation is (`compat`). `Ok(true)` for a query or
    /// mutation (bounded by the request deadline), `Ok(false)` for a subscription.
    fn admit(&self, caller: &Caller, payload: &mut Value) -> Result<bool, Refusal> {
        if let Err(limited) = self.state.check_rate(caller) {
            return Err(Refusal {
                message: "Too many requests; slow down.".to_owned(),
                extensions: json!({
                    "code": limited.kind().graphql(),
                    "retryAfter": limited.retry_after(),
                }),
            });
        }
        let request: Option<GraphQLRequest> = serde_json::from_value(json!({
            "query": payload["query"],
            "operationName": payload["operationName"],
            "variables": payload["variables"],
        }))
        .ok();
        // A payload that is not an operation is juniper's to refuse.
        let Some(mut request) = request else {
            return Ok(false);
        };
        let schema = &self.state.schema.schema;
        limits::check(schema, &[&request], &self.state.settings.graphql).map_err(|e| {
            let mut extensions = json!({"code": e.kind().graphql(), "limit": e.limit()});
            if let Some(found) = e.found() {
                extensions["found"] = json!(found);
            }
            Refusal {
                message: e.to_string(),
                extensions,
            }
        })?;
        // juniper runs what the gate passes on: the operation as a POST would run it (and not
        // one that would make juniper panic).
        super::compat::normalise(schema, &mut request).map_err(|message| Refusal {
            message,
            extensions: json!({"code": ErrorCode::ValidationFailed.graphql()}),
        })?;
        if let Some(fields) = payload.as_object_mut() {
            fields.insert("query".to_owned(), json!(request.query));
            if let Some(variables) = request.variables.as_ref()
                && let Ok(variables) = serde_json::to_value(variables)
            {
                fields.insert("variables".to_owned(), variables);
            }
        }
        Ok(!is_subscription(schema, &request))
    }
}

/// Whether the operation a request runs is a subscription.
fn is_subscription(
    schema: &juniper::SchemaType<DefaultScalarValue>,
    request: &GraphQLRequest,
) -> bool {
    let Ok(document) = juniper::parser::parse_document_source(&request.query, schema) else {
        return false;
    };
    document.iter().any(|d| match d {
        Definition::Operation(op) => {
            let named = op.item.name.as_ref().map(|n| n.item);
            let chosen = match (&request.operation_name, named) {
                (Some(wanted), Some(name)) => wanted == name,
                (Some(_), None) => false,
                (None, _) => true,
            };
            chosen && op.item.operation_type == OperationType::Subscription
        }
        Definition::Fragment(_) => false,
    })
}

#[cfg(test)]
#[path = "socket_tests.rs"]
mod tests;
