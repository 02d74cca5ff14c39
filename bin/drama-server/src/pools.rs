//! How many database connections a process opens, and for what.
//!
//! A job handler holds at most one pooled connection at a time (its reads, its checkpoint,
//! the transaction that commits its product), and so does each loop of the job engine. A
//! process that runs workers therefore gets one connection per handler slot and one per
//! engine loop on top of the connections for HTTP requests: no handler waits for a connection
//! another handler holds, and a flood of handlers cannot take the connections the API answers
//! with. The worker's heartbeat is not in the pool at all (`PgJobStore` keeps a connection of
//! its own for it), so even a pool exhausted by something else cannot lapse its lease.

use drama_postgres::PgSettings;

use crate::settings::Settings;

/// Pooled connections the job engine holds besides its handlers', each at most one at a
/// time: the claimer, the completer, the notification listener (held as long as it
/// listens), the reaper/pruner, and the refund and orphan-sweeping loops.
pub(crate) const ENGINE_CONNECTIONS: u32 = 6;

/// What a process does with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `serve --no-workers` and the CLI commands: requests (and, in `serve`, the refund and
    /// sweeping loops) share `database.max_connections`.
    Requests,
    /// `serve` with its job workers.
    RequestsAndWorkers,
    /// `worker`: job workers only.
    Workers,
}

/// How a process's pool is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolPlan {
    /// For HTTP requests: `database.max_connections` (none in `worker`).
    pub(crate) requests: u32,
    /// One per handler slot (`worker.concurrency`).
    pub(crate) handlers: u32,
    /// For the job engine's loops ([`ENGINE_CONNECTIONS`]).
    pub(crate) engine: u32,
}

impl PoolPlan {
    pub(crate) fn new(settings: &Settings, role: Role) -> Self {
        Self::of(
            settings.database.max_connections,
            settings.worker.concurrency,
            role,
        )
    }

    fn of(max_connections: u32, concurrency: usize, role: Role) -> Self {
        let requests = max_connections.max(1);
        // `worker_config` runs at least one handler.
        let handlers = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
        match role {
            Role::Requests => Self {
                requests,
                handlers: 0,
                engine: 0,
            },
            Role::RequestsAndWorkers => Self {
                requests,
                handlers,
                engine: ENGINE_CONNECTIONS,
            },
            Role::Workers => Self {
                requests: 0,
                handlers,
                engine: ENGINE_CONNECTIONS,
            },
        }
    }

    /// The pool size.
    pub(crate) fn connections(&self) -> u32 {
        self.requests
            .saturating_add(self.handlers)
            .saturating_add(self.engine)
    }

    /// The database settings with the pool sized by this plan.
    pub(crate) fn apply(&self, database: &PgSettings) -> PgSettings {
        let mut sized = database.clone();
        sized.max_connections = self.connections();
        sized
    }

    /// Says at startup how the pool was sized.
    pub(crate) fn log(&self) {
        tracing::info!(
            pool = self.connections(),
            requests = self.requests,
            handler_slots = self.handlers,
            engine = self.engine,
            heartbeat_connection = self.handlers > 0,
            "database pool sized: connections for requests, one per handler slot and one per \
             job-engine loop (the worker heartbeat has a connection of its own)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_gets_a_connection_per_handler_slot_and_per_engine_loop() {
        let plan = PoolPlan::of(10, 16, Role::Workers);
        assert_eq!((plan.requests, plan.handlers, plan.engine), (0, 16, 6));
        assert_eq!(plan.connections(), 22);
        // Whatever the request pool is configured to.
        assert_eq!(PoolPlan::of(2, 16, Role::Workers).connections(), 22);
    }

    #[test]
    fn serve_with_workers_keeps_the_request_connections_for_requests() {
        let plan = PoolPlan::of(10, 16, Role::RequestsAndWorkers);
        assert_eq!(plan.connections(), 10 + 16 + ENGINE_CONNECTIONS);
        assert!(plan.connections() - plan.requests >= plan.handlers + ENGINE_CONNECTIONS);
    }

    #[test]
    fn without_workers_the_configured_pool_is_the_pool() {
        assert_eq!(PoolPlan::of(10, 16, Role::Requests).connections(), 10);
        assert_eq!(PoolPlan::of(0, 0, Role::Requests).connections(), 1);
    }

    #[test]
    fn a_slot_count_of_zero_still_has_a_connection_for_the_handler_that_runs() {
        let plan = PoolPlan::of(10, 0, Role::Workers);
        assert_eq!(plan.handlers, 1);
        let sized = plan.apply(&PgSettings::from_url("postgres://u@db:5432/x"));
        assert_eq!(sized.max_connections, 1 + ENGINE_CONNECTIONS);
    }
}
