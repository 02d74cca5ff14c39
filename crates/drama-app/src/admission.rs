//! Admission of the writes a check guards: a per-user quota (dramas held, runs at once) and a
//! drama id that must be free. The check reads, the write follows; without a lock, requests
//! of one user that arrive together would each pass the check before any of them wrote. Here
//! a use case holds the user's lock (and the id's, when it takes an id) from its check to its
//! write, so that requests racing in one process are admitted one at a time. Requests racing
//! through different processes still may each pass once (docs/API.md says so); the 50-key
//! limit, which must be exact, is checked under the user's row lock in the store instead.
//!
//! Locks are striped (a fixed set, chosen by a hash): two users may share a stripe and then
//! wait for each other's admission, which must therefore stay short (a few queries, no
//! reads that grow with a drama). A generation request, which reads a drama, its objects and
//! its active runs' tasks and plans from them before it submits, takes instead a turn of
//! its own owner's drama (`Admission::drama`, one lock per owner and drama, not striped):
//! requests of one drama wait for each other there, and nobody else does.
//!
//! One order for every use case: at most one drama turn first, then at most one id stripe,
//! then at most one user stripe (taken where the run or the drama is written: `App::submit`,
//! `App::create_drama`), never an earlier kind while a later one is held, and none taken
//! again while held — so no two admissions wait for each other in a cycle.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hash};
use std::sync::{Arc, PoisonError};

use drama_domain::{DramaId, UserId};
use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard};

/// Stripes per kind of key: enough that unrelated users rarely meet.
const STRIPES: usize = 256;

/// The stripes of users and of drama ids, and the drama turns taken.
pub(crate) struct Admission {
    users: Vec<Mutex<()>>,
    ids: Vec<Mutex<()>>,
    hasher: std::hash::RandomState,
    /// The lock of each (owner, drama) whose turn is held or awaited, and how many requests
    /// hold or await it; an entry goes with the last of them, so the map holds only the
    /// dramas being generated.
    dramas: Arc<std::sync::Mutex<DramaTurns>>,
}

type DramaTurns = HashMap<(UserId, DramaId), (Arc<Mutex<()>>, usize)>;

/// Held while a use case checks and writes; dropping it lets the next request in.
pub(crate) type Admitted<'a> = MutexGuard<'a, ()>;

/// A drama's turn ([`Admission::drama`]); dropping it lets the drama's next request in.
pub(crate) struct DramaTurn {
    guard: Option<OwnedMutexGuard<()>>,
    key: (UserId, DramaId),
    turns: Arc<std::sync::Mutex<DramaTurns>>,
}

impl Drop for DramaTurn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, users)) = turns.get_mut(&self.key) {
            *users = users.saturating_sub(1);
            if *users == 0 {
                turns.remove(&self.key);
            }
        }
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(STRIPES)
    }
}

impl Admission {
    /// `stripes` locks per kind of key (at least one).
    pub(crate) fn new(stripes: usize) -> Self {
        let stripes = stripes.max(1);
        Self {
            users: (0..stripes).map(|_| Mutex::new(())).collect(),
            ids: (0..stripes).map(|_| Mutex::new(())).collect(),
            hasher: std::hash::RandomState::new(),
            dramas: Arc::default(),
        }
    }

    fn stripe(&self, key: impl Hash) -> usize {
        // The remainder is below the number of stripes, a usize, so it cannot truncate.
        (self.hasher.hash_one(key) % self.users.len() as u64) as usize
    }

    /// Waits for the turn of `owner`'s drama `id`: taken before any stripe, and held by a
    /// generation request from its reads to its submit (which takes the user's stripe).
    pub(crate) async fn drama(&self, owner: UserId, id: &DramaId) -> DramaTurn {
        let key = (owner, id.clone());
        let lock = {
            let mut turns = self.dramas.lock().unwrap_or_else(PoisonError::into_inner);
            let (lock, users) = turns.entry(key.clone()).or_default();
            *users += 1;
            lock.clone()
        };
        // Counted from here: a request dropped while it waits gives its count back too.
        let mut turn = DramaTurn {
            guard: None,
            key,
            turns: self.dramas.clone(),
        };
        turn.guard = Some(lock.lock_owned().await);
        turn
    }

    /// How many dramas have a turn held or awaited.
    #[cfg(test)]
    fn dramas_in_turn(&self) -> usize {
        self.dramas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Waits for the id's turn: taken before the user's, never while holding it.
    pub(crate) async fn id(&self, id: &DramaId) -> Admitted<'_> {
        self.ids[self.stripe(id.as_str())].lock().await
    }

    /// Waits for the user's turn.
    pub(crate) async fn user(&self, user: UserId) -> Admitted<'_> {
        self.users[self.stripe(user)].lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_user_is_admitted_one_request_at_a_time() {
        let admission = Arc::new(Admission::default());
        let user = UserId(uuid::Uuid::new_v4());
        let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (admission, inside, most) = (admission.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = admission.user(user).await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn one_id_is_taken_by_one_request_at_a_time_whoever_asks() {
        let admission = Admission::default();
        let id = DramaId::parse("shared").unwrap();
        let alice = UserId(uuid::Uuid::new_v4());
        let first = admission.id(&id).await;
        let _alice = admission.user(alice).await;
        // Whoever asks for a held id waits, its owner or another user.
        let second = tokio::time::timeout(Duration::from_millis(50), admission.id(&id));
        assert!(second.await.is_err(), "the id is held");
        drop(first);
        let _second = admission.id(&id).await;
    }

    #[tokio::test]
    async fn a_drama_turn_is_one_at_a_time_and_shared_with_nobody_else() {
        let admission = Admission::new(1);
        let (alice, bob) = (UserId::random(), UserId::random());
        let drama = DramaId::parse("turns").unwrap();
        let first = admission.drama(alice, &drama).await;
        let again = tokio::time::timeout(Duration::from_millis(50), admission.drama(alice, &drama));
        assert!(again.await.is_err(), "the drama's turn is held");
        // Another drama, another owner's drama of that id, and the one user stripe are free.
        let _other = admission
            .drama(alice, &DramaId::parse("other").unwrap())
            .await;
        let _bobs = admission.drama(bob, &drama).await;
        drop(admission.user(alice).await);
        drop(first);
        let _second = admission.drama(alice, &drama).await;
    }

    #[tokio::test]
    async fn drama_turns_are_forgotten_with_their_last_holder() {
        let admission = Admission::default();
        let (alice, drama) = (UserId::random(), DramaId::parse("turns").unwrap());
        let first = admission.drama(alice, &drama).await;
        // A request that gives up waiting gives its place back.
        let waited =
            tokio::time::timeout(Duration::from_millis(20), admission.drama(alice, &drama));
        assert!(waited.await.is_err());
        assert_eq!(admission.dramas_in_turn(), 1);
        drop(first);
        assert_eq!(admission.dramas_in_turn(), 0);
        drop(admission.drama(alice, &drama).await);
        assert_eq!(admission.dramas_in_turn(), 0);
    }
}
