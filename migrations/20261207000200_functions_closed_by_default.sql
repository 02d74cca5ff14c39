-- Functions created later are not callable by everyone.
--
-- PostgreSQL lets PUBLIC execute every new function, and a default limited to one schema
-- (`alter default privileges in schema public ... revoke execute ... from public`, in
-- 20261206000400) cannot take away a default that is not limited to one: so a function added
-- later in `public` by this role — through another migration, `supabase db push` or the SQL
-- editor — was callable through the Data API's RPC endpoint by `anon` and `authenticated`.
-- Revoked here for every schema; a function meant for clients must now grant EXECUTE itself.
alter default privileges revoke execute on functions from public;
