-- Objects that exist on every Supabase project but not on plain PostgreSQL.
-- Each one is created only where it is missing, so this file is a no-op on Supabase and makes
-- local databases, CI and `#[sqlx::test]` databases look like Supabase to the later migrations.

-- Roles are global to the cluster: parallel test databases may race to create them.
do $$
declare
  role_name text;
begin
  foreach role_name in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (select 1 from pg_roles where rolname = role_name) then
      begin
        if role_name = 'service_role' then
          execute format('create role %I nologin noinherit bypassrls', role_name);
        else
          execute format('create role %I nologin noinherit', role_name);
        end if;
      exception when duplicate_object or unique_violation then
        null; -- another database created it first
      end;
    end if;
  end loop;
end
$$;

-- Supabase owns the `auth` schema; touch it only when it does not exist at all.
do $$
begin
  if not exists (select 1 from pg_namespace where nspname = 'auth') then
    create schema auth;
    create table auth.users (
      id uuid primary key,
      email text,
      created_at timestamptz not null default now()
    );
    -- Same contract as Supabase's: the `sub` claim of the request's JWT, or null.
    create function auth.uid() returns uuid
      language sql stable
      as $fn$
        select nullif(
          coalesce(
            current_setting('request.jwt.claim.sub', true),
            current_setting('request.jwt.claims', true)::jsonb ->> 'sub'
          ),
          ''
        )::uuid
      $fn$;
    grant usage on schema auth to anon, authenticated, service_role;
    grant execute on function auth.uid() to anon, authenticated, service_role;
  end if;
end
$$;

do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;

-- sqlx keeps its history in public._sqlx_migrations, which Supabase's Data API would expose.
-- RLS without policies hides it from anon and authenticated. (Absent when another tool applies
-- these files, e.g. the Supabase CLI.)
do $$
begin
  if to_regclass('public._sqlx_migrations') is not null then
    alter table public._sqlx_migrations enable row level security;
  end if;
end
$$;
