// Summarizes the JSON lines of `run.sh` as a Markdown table: per system and shape the median
// rate with every repetition, the median CPU per job (all of it, and PostgreSQL's part) and the
// ratio of the median rate to Graphile Worker's.
//
//   node summarize.mjs results.jsonl
import { readFileSync } from "node:fs";

const rows = readFileSync(process.argv[2], "utf8")
  .split("\n")
  .filter((l) => l.startsWith("{"))
  .map((l) => JSON.parse(l));

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x) => Math.round(x).toLocaleString("en-US");

const groups = new Map();
for (const r of rows) {
  const key = `${r.system}|${r.shape}`;
  if (!groups.has(key)) groups.set(key, { label: r.label, unit: r.unit ?? "jobs/s", runs: [] });
  groups.get(key).runs.push(r);
}
const reference = groups.get("gw|queue");
const refRate = reference ? median(reference.runs.map((r) => r.rate)) : null;

console.log("| system | rate (median) | repetitions | CPU per job (PostgreSQL) | vs Graphile Worker |");
console.log("|---|---|---|---|---|");
for (const { label, unit, runs } of groups.values()) {
  const rate = median(runs.map((r) => r.rate));
  const reps = runs.map((r) => fmt(r.rate)).join(" / ");
  const cpu = median(runs.map((r) => r.cpu_us_per_job));
  const db = median(runs.map((r) => r.db_cpu_us_per_job));
  const ratio = refRate && unit === "jobs/s" ? `${(rate / refRate).toFixed(2)}×` : "—";
  console.log(`| ${label} | ${fmt(rate)} ${unit} | ${reps} | ${cpu.toFixed(0)} µs (${db.toFixed(0)}) | ${ratio} |`);
}
