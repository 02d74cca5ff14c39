-- A key remembers the key that made it, so a revocation reaches every successor.
--
-- A user may make keys with an API key. Until now, revoking a key that had been taken left
-- the keys made with it working: whoever took it kept access after the owner revoked it.
-- `made_by` names the key the caller presented (null for keys made by a signed-in session or
-- by the operator's `keys create`); revoking a key revokes, down the line, every key made
-- with it. Keys made before this file have no maker and are revoked on their own.
alter table public.api_keys
  add column made_by uuid references public.api_keys (id) on delete set null;

-- revoke_api_key: the keys made with a key (the revocation's recursive walk).
create index api_keys_made_by_idx on public.api_keys (made_by) where made_by is not null;

-- Clients read their own keys' rows through the Data API, this column with the others.
grant select (made_by) on public.api_keys to authenticated;
