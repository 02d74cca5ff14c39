-- Bookkeeping of `drama-server import-r2`: which file of the old bucket became which drama, the
-- SHA-256 of the file at that time, and the drama's version right after the import. A rerun
-- skips a file whose hash is unchanged, updates a drama whose file changed, and leaves alone a
-- drama whose version moved on (edited here since its import).
--
-- drama_id is deliberately not a foreign key: the record outlives a deleted drama, so that a
-- rerun can tell "deleted since its import" (leave it deleted) from "never imported".

create table public.legacy_imports (
  source_key text primary key check (source_key <> ''),
  source_hash text not null check (source_hash ~ '^[0-9a-f]{64}$'),
  drama_id text not null check (drama_id ~ '^[A-Za-z0-9_.-]{1,128}$'),
  owner_id uuid not null,
  drama_version bigint not null check (drama_version >= 1),
  imported_at timestamptz not null default now()
);
-- recorded_imports(prefix) reads every record once per run (no narrower query exists); the
-- join to public.dramas uses its primary key.

-- Operators' data, never a client's: RLS on, no policies, no grants.
alter table public.legacy_imports enable row level security;
revoke all on public.legacy_imports from anon, authenticated;
