-- When a worker's registration last came back to life.
--
-- A reaper took back the tasks of every registration that had expired, and never looked at its
-- own. A database outage longer than the lease (or a new primary whose clock runs ahead)
-- leaves every registration expired: the first reaper back requeued the running tasks of every
-- live process, whose handlers had paid their providers and whose results the fences then
-- refused, so each of those calls was paid again.
--
-- `alive_since` is set when a registration is created, when it is renewed after it had
-- expired, and when a heartbeat comes more than half a lease after the previous one (the
-- process could not reach the database for a while, and neither, perhaps, could its peers);
-- otherwise it is kept. A reaper takes tasks back only while its own registration is alive and
-- has been since at least one lease ago, so after an outage nobody reaps until live processes
-- had a lease to register again.
--
-- Processes of the previous version do not write it (rows they insert get the default); their
-- reapers do not read it. Existing rows count as alive since this migration.

alter table public.job_workers add column alive_since timestamptz not null default now();
