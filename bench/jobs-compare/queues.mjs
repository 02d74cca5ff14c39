// Graphile Worker and pg-boss on their batched settings, measured the way `jobs_bench` measures
// drama-jobs: N no-op jobs enqueued in bulk (timed separately), `VACUUM ANALYZE` and a
// checkpoint, then one worker process (already started and connected) is told to go; the clock
// stops when the database shows every job done. CPU time is read from /proc for the worker
// process and every PostgreSQL backend of the bench database.
//
//   node queues.mjs gw     --jobs 20000 --concurrency 8
//   node queues.mjs pgboss --jobs 20000
//
// Prints one JSON line on stdout. Drops and recreates the database `bench_gw` or `bench_pgboss`
// on the server of DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import process from "node:process";
import pg from "pg";

const adminUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
function dbUrl(name) {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

function options(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith("--")) out[argv[i].slice(2)] = argv[i + 1];
  }
  return {
    jobs: Number(out.jobs ?? 20000),
    concurrency: Number(out.concurrency ?? 8),
    localQueue: Number(out["local-queue"] ?? 500),
    batchSize: Number(out["batch-size"] ?? 100),
    localConcurrency: Number(out["local-concurrency"] ?? 4),
  };
}

// User + system CPU seconds of a process (Linux /proc, 100 ticks a second).
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

async function databaseCpu(client) {
  const { rows } = await client.query(
    "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
  );
  return rows.reduce((sum, r) => sum + cpuSeconds(r.pid), 0);
}

async function freshDatabase(name) {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.query(`create database ${name}`);
  await admin.end();
}

const systems = {
  gw: {
    database: "bench_gw",
    label: (o) => `Graphile Worker 0.18, localQueue ${o.localQueue}, concurrency ${o.concurrency}`,
    async setup(url, o) {
      const { makeWorkerUtils } = await import("graphile-worker");
      const utils = await makeWorkerUtils({ connectionString: url });
      await utils.migrate();
      for (let i = 0; i < o.jobs; i += 1000) {
        const chunk = [];
        for (let j = i; j < Math.min(i + 1000, o.jobs); j++) {
          chunk.push({ identifier: "noop", payload: { i: j } });
        }
        await utils.addJobs(chunk);
      }
      await utils.release();
    },
    doneSql: "select not exists (select 1 from graphile_worker._private_jobs) as done",
    async work(url, o) {
      const { run } = await import("graphile-worker");
      const runner = await run({
        connectionString: url,
        concurrency: o.concurrency,
        noHandleSignals: true,
        pollInterval: 2000,
        taskList: { noop: async () => {} },
        preset: {
          worker: {
            localQueue: { size: o.localQueue },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
          },
        },
      });
      return () => runner.stop();
    },
  },
  pgboss: {
    database: "bench_pgboss",
    label: (o) =>
      `pg-boss 12.38, batchSize ${o.batchSize}, localConcurrency ${o.localConcurrency}`,
    async setup(url, o) {
      const { PgBoss } = await import("pg-boss");
      const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
      boss.on("error", (e) => console.error(e));
      await boss.start();
      await boss.createQueue("noop");
      for (let i = 0; i < o.jobs; i += 1000) {
        const chunk = [];
        for (let j = i; j < Math.min(i + 1000, o.jobs); j++) chunk.push({ data: { i: j } });
        await boss.insert("noop", chunk);
      }
      await boss.stop({ graceful: false });
    },
    doneSql: null,
    async work(url, o) {
      const { PgBoss } = await import("pg-boss");
      const boss = new PgBoss({
        connectionString: url,
        supervise: false,
        schedule: false,
        migrate: false,
      });
      boss.on("error", (e) => console.error(e));
      await boss.start();
      await boss.work(
        "noop",
        {
          batchSize: o.batchSize,
          localConcurrency: o.localConcurrency,
          pollingIntervalSeconds: 0.5,
          burstWhenBatchFull: true,
        },
        async () => {},
      );
      return () => boss.stop({ graceful: false });
    },
  },
};

// Child: start the worker on "GO", stop when stdin closes.
async function child(name, o) {
  const system = systems[name];
  const lines = createInterface({ input: process.stdin });
  const it = lines[Symbol.asyncIterator]();
  console.log("READY");
  const go = await it.next();
  if (go.value !== "GO") throw new Error(`expected GO, got ${go.value}`);
  const stop = await system.work(dbUrl(system.database), o);
  for await (const _ of it) {
    // Nothing else is sent; the end of input stops the worker.
  }
  await stop();
  process.exit(0);
}

async function parent(name, o) {
  const system = systems[name];
  const url = dbUrl(system.database);
  await freshDatabase(system.database);
  const t = performance.now();
  await system.setup(url, o);
  const enqueue = o.jobs / ((performance.now() - t) / 1000);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("vacuum analyze");
  await client.query("checkpoint");
  const doneSql =
    system.doneSql ??
    `select count(*) = ${o.jobs} as done from pgboss.job where name = 'noop' and state = 'completed'`;
  const worker = spawn(process.execPath, [new URL(import.meta.url).pathname, `${name}-worker`, ...process.argv.slice(3)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const out = createInterface({ input: worker.stdout });
  const outLines = out[Symbol.asyncIterator]();
  const ready = await outLines.next();
  if (ready.value !== "READY") throw new Error(`worker said ${ready.value}`);
  const dbBefore = await databaseCpu(client);
  const workerBefore = cpuSeconds(worker.pid);
  const t0 = performance.now();
  worker.stdin.write("GO\n");
  for (;;) {
    const { rows } = await client.query(doneSql);
    if (rows[0].done) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const secs = (performance.now() - t0) / 1000;
  const dbCpu = (await databaseCpu(client)) - dbBefore;
  const workerCpu = cpuSeconds(worker.pid) - workerBefore;
  worker.stdin.end();
  await new Promise((r) => worker.on("exit", r));
  await client.end();
  const perJob = (s) => (s * 1e6) / o.jobs;
  console.log(
    JSON.stringify({
      system: name,
      label: system.label(o),
      shape: "queue",
      jobs: o.jobs,
      secs,
      rate: o.jobs / secs,
      enqueue,
      cpu_us_per_job: perJob(dbCpu + workerCpu),
      db_cpu_us_per_job: perJob(dbCpu),
    }),
  );
}

const mode = process.argv[2];
const o = options(process.argv.slice(3));
if (mode?.endsWith("-worker")) {
  await child(mode.slice(0, -"-worker".length), o);
} else if (systems[mode]) {
  await parent(mode, o);
  process.exit(0);
} else {
  console.error("usage: node queues.mjs gw|pgboss [--jobs N] [--concurrency C] [--local-queue N] [--batch-size N] [--local-concurrency N]");
  process.exit(2);
}
