-- Bounds on a user's API key rows.
--
-- Revoking a key made room for another usable one, and revoked rows stayed forever: a key
-- could make keys, revoke its maker and start again, so one user's rows (and the listing of
-- them) grew without end. Creations are now also capped per day, revoked and expired keys
-- are deleted by the sweeper 30 days after they stopped working, and the listing shows the
-- usable keys and those of that period only.

-- create_api_key_capped: the count of the owner's usable keys, under the owner's row lock,
-- reads the unrevoked rows only.
create index api_keys_owner_unrevoked_idx on public.api_keys (owner_id) where revoked_at is null;

-- purge_lapsed_api_keys: keys that stopped working (revoked or expired, whichever came first)
-- before a cutoff, of every owner.
create index api_keys_lapsed_idx on public.api_keys ((least(revoked_at, expires_at)));
