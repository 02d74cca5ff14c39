-- settle_refunds: runs whose refundable cost changed since the last refund.
create index job_groups_refund_due_idx on public.job_groups (run_id)
  where id = run_id and cost_refundable <> cost_refunded;
