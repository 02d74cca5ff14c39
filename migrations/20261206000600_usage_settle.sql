-- A script call priced by its tokens holds its per-call price when its run starts; when it
-- completes, the part of the hold its usage did not cost is credited back with the reason
-- `usage_settle` (in the same transaction as the completion, carrying the run and task).
-- Adding a reason is an expansion: older processes never write it.

alter table public.credit_ledger drop constraint credit_ledger_reason_check;
alter table public.credit_ledger add constraint credit_ledger_reason_check check (reason in (
  'opening', 'grant', 'adjustment', 'run_charge', 'expansion', 'resume_charge',
  'refund', 'clawback', 'usage_settle'
));
