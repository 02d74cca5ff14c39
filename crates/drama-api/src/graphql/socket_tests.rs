//! The gate's outgoing queue is bounded: a client that does not read what the server sends
//! stops being read, instead of having the answers to its frames pile up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use drama_app::{App, Ports};
use futures::StreamExt as _;

use super::*;

fn gate() -> Gate {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (ports, _, _) = Ports::memory(assets, drama_ai::AiProviders::offline(0));
    let settings = crate::HttpSettings {
        // Nothing here waits for a timer; make sure none fires.
        ws_init_timeout: Duration::from_secs(3600),
        ..crate::HttpSettings::default()
    };
    Gate {
        state: ApiState::new(App::new(ports), settings),
        protocol: Protocol::Transport,
        slot: Arc::default(),
        running: Arc::default(),
        stopped: Arc::default(),
        caller: Arc::default(),
        named: crate::media_links::NamedOwners::default(),
        client: None,
        waiting: Mutex::new(None),
    }
}

/// `n` client frames made by `frame`, counting in `taken` those the gate reads.
fn frames(
    n: usize,
    taken: &Arc<AtomicUsize>,
    frame: fn() -> AggregatedMessage,
) -> impl Stream<Item = Result<AggregatedMessage, ProtocolError>> + Unpin {
    let taken = taken.clone();
    futures::stream::iter(0..n).map(move |_| {
        taken.fetch_add(1, Ordering::SeqCst);
        Ok(frame())
    })
}

/// Polls `side` until it has gone as far as it can (it never ends in these tests): every
/// client frame is ready at once, so only the gate's own bound can stop it.
async fn settle(side: &mut Pin<&mut impl Future<Output = ()>>) {
    for _ in 0..2_000 {
        assert!(
            futures::poll!(side.as_mut()).is_pending(),
            "the socket ended"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_client_that_does_not_read_its_pongs_stops_being_read() {
    let gate = gate();
    let taken = Arc::new(AtomicUsize::new(0));
    let pings = frames(10_000, &taken, || {
        AggregatedMessage::Ping(bytes::Bytes::from_static(b"ping"))
    });
    let (queue, mut queued) = mpsc::channel(OUTGOING_QUEUE);
    let (closer, _closes) = mpsc::channel(1);
    let input = gate.input(pings, futures::sink::drain(), queue, closer);
    tokio::pin!(input);
    settle(&mut input).await;
    let read = taken.load(Ordering::SeqCst);
    assert!(
        (1..=OUTGOING_QUEUE).contains(&read),
        "{read} pings read while nothing was sent"
    );
    // The client takes ten frames: about as many more of its own are read, and no more.
    for _ in 0..10 {
        assert!(matches!(queued.recv().await, Some(Outgoing::Pong(_))));
    }
    settle(&mut input).await;
    let again = taken.load(Ordering::SeqCst);
    assert!(
        (read + 1..=read + 10).contains(&again),
        "{again} read after {read}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_juniper_answers_stops_being_read() {
    let gate = gate();
    // Protocol pings are answered by juniper (before `connection_init` too).
    let taken = Arc::new(AtomicUsize::new(0));
    let pings = frames(10_000, &taken, || {
        AggregatedMessage::Text(r#"{"type": "ping"}"#.into())
    });
    let init = |_: Variables| async {
        Err::<ConnectionConfig<Ctx, DefaultScalarValue>, _>(Refused(String::new()))
    };
    let schema = ArcSchema(gate.state.schema.clone());
    let (juniper_tx, juniper_rx) = graphql_transport_ws::Connection::new(schema, init).split();
    let (queue, _queued) = mpsc::channel(OUTGOING_QUEUE);
    let (closer, _closes) = mpsc::channel(1);
    let input = std::pin::pin!(gate.input(pings, juniper_tx, queue.clone(), closer));
    let pump = std::pin::pin!(gate.pump(juniper_rx, queue));
    let both = async {
        futures::future::select(input, pump).await;
    };
    tokio::pin!(both);
    settle(&mut both).await;
    let read = taken.load(Ordering::SeqCst);
    // Each read ping has its pong in the queue or on its way into it, never more.
    assert!(
        (1..=OUTGOING_QUEUE + 1).contains(&read),
        "{read} pings read while nothing was sent"
    );
}
