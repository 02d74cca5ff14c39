-- A script call priced by its tokens holds its per-call price when its run starts; when it
-- completes, the part of the hold its usage did not cost is credited back with the reason
-- `usage_settle` (in the same transaction as the completion, carrying the run and task).
-- Older processes never write the new reason, but they cannot read it either: configure token
-- prices only once every process runs this version (docs/CONFIG.md, SCRIPT_MODELS).
--
-- The constraint is replaced `not valid`, so this step takes its lock only for an instant
-- instead of scanning the whole ledger while every credit movement waits; the next migration
-- validates it with a lock that lets movements go on.

alter table public.credit_ledger drop constraint credit_ledger_reason_check;
alter table public.credit_ledger add constraint credit_ledger_reason_check check (reason in (
  'opening', 'grant', 'adjustment', 'run_charge', 'expansion', 'resume_charge',
  'refund', 'clawback', 'usage_settle'
)) not valid;
