//! Admission of the writes a check guards: a per-user quota (dramas held, runs at once) and a
//! drama id that must be free. The check reads, the write follows; without a lock, requests
//! of one user that arrive together would each pass the check before any of them wrote. Here
//! a use case holds the user's lock (and the id's, when it takes an id) from its check to its
//! write, so that requests racing in one process are admitted one at a time. Requests racing
//! through different processes still may each pass once (docs/API.md says so); the 50-key
//! limit, which must be exact, is checked under the user's row lock in the store instead.
//!
//! Locks are striped (a fixed set, chosen by a hash): two users may share a stripe and then
//! wait for each other's admission, which is short. One order for every use case: at most one
//! id stripe first, then at most one user stripe (taken where the run or the drama is
//! written: `App::submit`, `App::create_drama`), never an id stripe while a user stripe is
//! held, and none taken again while held — so no two admissions wait for each other in a
//! cycle.

use std::hash::{BuildHasher as _, Hash};

use drama_domain::{DramaId, UserId};
use tokio::sync::{Mutex, MutexGuard};

/// Stripes per kind of key: enough that unrelated users rarely meet.
const STRIPES: usize = 256;

/// The stripes of users and of drama ids.
pub(crate) struct Admission {
    users: Vec<Mutex<()>>,
    ids: Vec<Mutex<()>>,
    hasher: std::hash::RandomState,
}

/// Held while a use case checks and writes; dropping it lets the next request in.
pub(crate) type Admitted<'a> = MutexGuard<'a, ()>;

impl Default for Admission {
    fn default() -> Self {
        Self {
            users: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            ids: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl Admission {
    fn stripe(&self, key: impl Hash) -> usize {
        // The remainder is below STRIPES, so the conversion cannot truncate.
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
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
}
