//! The users an import needs: created once each, before any drama is written, and looked up
//! (with a cache) for files that name a user directly.

use std::collections::{HashMap, HashSet};

use drama_dal::legacy_tables::{AuthStanding, LegacyTables};
use drama_dal::{NewUser, RepoError};
use drama_domain::UserId;

use super::Importer;
use crate::error::LegacyError;
use crate::origin::Origin;
use crate::source::OwnerTarget;

impl Importer {
    /// An owner the import creates: named as such, opening with the configured credits.
    pub(super) fn new_owner(&self, user: UserId) -> NewUser {
        let mut new = NewUser::new(user);
        new.display_name = Some("legacy import".to_owned());
        new.tokens = self.options.initial_credits.max(0);
        new
    }

    /// An old user's opening balance. The old tables were open to every holder of the
    /// project's anon key (allow-all policies, Supabase's default grants: see
    /// [`ImportOptions::legacy_access`](crate::ImportOptions)), so its `tokens` are carried
    /// over only when the operator vouches for them (`--trust-legacy-balances`); otherwise
    /// the user opens as a new one would, and a larger old balance is reported for the
    /// operator to grant by hand. Either way no more than `max_legacy_credits`.
    fn opening_balance(&self, mut user: NewUser) -> (NewUser, Option<String>) {
        let cap = self.options.max_legacy_credits.max(0);
        let old = user.tokens;
        let opening = if self.options.trust_legacy_balances {
            old
        } else {
            self.options.initial_credits.max(0)
        };
        user.tokens = opening.min(cap);
        let note = if !self.options.trust_legacy_balances && old > user.tokens {
            Some(format!(
                "users row {}: its old balance of {old} was not carried over (the old tables \
                 were open to every holder of the anon key unless locked down, see \
                 legacy_access; --trust-legacy-balances carries balances over); it opens \
                 with {}",
                user.id, user.tokens
            ))
        } else if old > user.tokens {
            Some(format!(
                "users row {}: its old balance of {old} is above LEGACY_MAX_CREDITS; it opens \
                 with {}",
                user.id, user.tokens
            ))
        } else {
            None
        };
        (user, note)
    }

    /// Notes on the old tables client roles could write before adoption closed them.
    pub(super) fn access_notes(&self, notes: &mut Vec<String>) {
        for access in &self.options.legacy_access {
            if access.writable_by.is_empty() {
                continue;
            }
            let how = if access.row_security {
                format!(
                    "row security on, but permissive policies {} let writes through",
                    access.write_policies.join(", ")
                )
            } else {
                "no row security".to_owned()
            };
            // The balances are vetted (`opening_balance`, `vet_against_auth`); the rest of a
            // users row is only shown to its user, and is copied as it stands.
            let copied = if access.table == "users" {
                "; its email and subscription_tier were copied as they stood"
            } else {
                ""
            };
            notes.push(format!(
                "old table {}: {} could insert or update its rows before adoption ({how}); \
                 what it holds may have been set by any client{copied}",
                access.table,
                access.writable_by.join(" and ")
            ));
        }
    }

    /// Creates the users the import needs, each once: from the old database (table origin),
    /// every row of its `users` table whose id is a UUID (the Supabase Auth id), with its
    /// email, name, balance and plan; then every mapped owner (`--owner`, `--owner-map`) the
    /// old table does not list, and every UUID that owns an old drama (Supabase Auth users the
    /// old table does not list), as [`Importer::new_owner`]. The old rows come first so that a
    /// mapped owner the old table knows keeps its balance and email instead of opening as a
    /// blank "legacy import" user. Existing users are left as they are (their balance too: a
    /// user is credited once, by its opening entry). Rows that cannot become users are noted.
    /// Answers the users created (or, dry, that would be).
    pub(super) async fn bring_users(
        &self,
        notes: &mut Vec<String>,
    ) -> Result<Vec<UserId>, LegacyError> {
        let mut wanted: Vec<NewUser> = Vec::new();
        // Said only of users this run creates: an existing user keeps its balance.
        let mut balance_notes: HashMap<UserId, String> = HashMap::new();
        // The ids only the old tables vouch for (not named by the operator).
        let mut from_tables: HashSet<UserId> = HashSet::new();
        let tables = match &self.origin {
            Origin::Tables(tables) => Some(tables.as_ref()),
            Origin::Bucket(_) => None,
        };
        if let Some(tables) = tables {
            for row in tables.legacy_users().await.map_err(LegacyError::Target)? {
                match crate::tables::new_user(&row) {
                    Ok(user) if wanted.iter().any(|w| w.id == user.id) => {}
                    Ok(user) => match self.options.owners.resolve(&user.id.to_string()) {
                        // Its dramas go to another user (the old demo user, given to
                        // `--owner`, or a map entry): it does not become a user of its own.
                        Some(OwnerTarget::Mapped(to)) if to != user.id => notes.push(format!(
                            "users row {}: its dramas go to user {to} (the owner map or \
                             --owner), so it is not imported as a user of its own; its balance \
                             of {} was not carried over",
                            user.id, user.tokens
                        )),
                        _ => {
                            let (user, note) = self.opening_balance(user);
                            if let Some(note) = note {
                                balance_notes.insert(user.id, note);
                            }
                            from_tables.insert(user.id);
                            wanted.push(user);
                        }
                    },
                    Err(why) => notes.push(why),
                }
            }
        }
        for user in self.options.owners.users() {
            if !wanted.iter().any(|w| w.id == user) {
                wanted.push(self.new_owner(user));
            }
        }
        if let Some(tables) = tables {
            let dramas = tables.legacy_dramas().await.map_err(LegacyError::Target)?;
            for owner in dramas.iter().filter_map(|d| d.owner.as_deref()) {
                if let Some(OwnerTarget::Direct(user)) = self.options.owners.resolve(owner)
                    && !wanted.iter().any(|w| w.id == user)
                {
                    from_tables.insert(user);
                    wanted.push(self.new_owner(user));
                }
            }
            for named in self.options.owners.users() {
                from_tables.remove(&named);
            }
            if !self.options.trust_legacy_balances {
                vet_against_auth(tables, &mut wanted, &from_tables, &mut balance_notes).await?;
            }
        }
        let mut created = Vec::new();
        for new in wanted {
            let user = new.id;
            if self.create_user(new).await? {
                notes.extend(balance_notes.remove(&user));
                created.push(user);
            }
            self.remember_user(user, true);
        }
        Ok(created)
    }

    /// Creates `new` unless the user exists; whether it was (or, dry, would be) created.
    async fn create_user(&self, new: NewUser) -> Result<bool, LegacyError> {
        match self.repos.users.get_user(new.id).await {
            Ok(_) => return Ok(false),
            Err(RepoError::NotFound { .. }) => {}
            Err(e) => return Err(LegacyError::Target(e)),
        }
        if self.options.dry_run {
            return Ok(true);
        }
        match self.repos.users.create_user(&new).await {
            Ok(_) => {
                tracing::info!(user = %new.id, "created a user of the old server");
                Ok(true)
            }
            Err(RepoError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(LegacyError::Target(e)),
        }
    }

    fn remember_user(&self, user: UserId, exists: bool) {
        self.known_users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user, exists);
    }

    pub(super) async fn user_exists(&self, user: UserId) -> Result<bool, RepoError> {
        let known = self
            .known_users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&user)
            .copied();
        if let Some(known) = known {
            return Ok(known);
        }
        let exists = match self.repos.users.get_user(user).await {
            Ok(_) => true,
            Err(RepoError::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        self.remember_user(user, exists);
        Ok(exists)
    }
}

/// Without `--trust-legacy-balances`, the users only the old tables vouch for (its `users`
/// rows, the owners its `dramas` name) are checked against Supabase Auth, which no client
/// could write: one Auth does not list, or lists as an anonymous session, opens with nothing,
/// as a new anonymous session does. Otherwise anyone could have minted credits before cutover
/// by opening anonymous sessions and inserting a `users` or `dramas` row for each. Without
/// `auth.users` (not a Supabase project) nothing is checked.
async fn vet_against_auth(
    tables: &dyn LegacyTables,
    wanted: &mut [NewUser],
    from_tables: &HashSet<UserId>,
    notes: &mut HashMap<UserId, String>,
) -> Result<(), LegacyError> {
    let ids: Vec<UserId> = wanted
        .iter()
        .map(|w| w.id)
        .filter(|id| from_tables.contains(id))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let Some(standing) = tables
        .auth_standing(&ids)
        .await
        .map_err(LegacyError::Target)?
    else {
        return Ok(());
    };
    for user in wanted.iter_mut().filter(|w| from_tables.contains(&w.id)) {
        let why = match standing.get(&user.id) {
            Some(AuthStanding::SignedUp) => continue,
            Some(AuthStanding::Anonymous) => "is an anonymous session in Supabase Auth",
            None => "is not a user of Supabase Auth",
        };
        if user.tokens > 0 {
            notes.insert(
                user.id,
                format!(
                    "user {}: {why} and only the old tables (open to clients) name it, so it \
                     opens with 0 credits rather than {}",
                    user.id, user.tokens
                ),
            );
            user.tokens = 0;
        }
    }
    Ok(())
}
