// BullMQ side of the redis_vs_bullmq bench (run by run.sh on the same
// redis-server as nvent_bench): no-op jobs processed per second at worker
// concurrency 1, 10 and 100 (queue pre-filled, timed from worker start to
// the last job), 3-step flows per second (FlowProducer chains, children
// first), enqueue->start latency p50/p99, and the process' peak RSS.
// Also the CPU time per job (per flow) of this process and of redis-server
// and their context switches ("cpu": {measure: [client us, redis us,
// client switches, redis switches]}). Prints one JSON line.
//   node bullmq_bench.mjs <port> <jobs> <flows> <latency samples> [redis pid]
import { readFileSync } from 'node:fs';
import { FlowProducer, Queue, Worker } from 'bullmq';

const [port, nJobs, nFlows, nLat, redisPid] = process.argv.slice(2).map(Number);
const cpu = {};
function redisCpuUs() {
  if (!redisPid) return 0;
  const s = readFileSync(`/proc/${redisPid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10000;   // clock ticks of 10 ms
}
// Context switches (voluntary + involuntary) of redis-server's main thread.
function redisCsw() {
  if (!redisPid) return 0;
  const s = readFileSync(`/proc/${redisPid}/status`, 'utf8');
  let sum = 0;
  for (const m of s.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) sum += Number(m[1]);
  return sum;
}
function cpuMark() {
  const u = process.resourceUsage();
  return {
    self: u.userCPUTime + u.systemCPUTime, redis: redisCpuUs(),
    selfCsw: u.voluntaryContextSwitches + u.involuntaryContextSwitches, redisCsw: redisCsw(),
  };
}
function cpuNote(name, m, ops) {
  const n = cpuMark();
  const per = (a, b, d) => +((a - b) / ops).toFixed(d);
  cpu[name] = [per(n.self, m.self, 1), per(n.redis, m.redis, 1),
    per(n.selfCsw, m.selfCsw, 2), per(n.redisCsw, m.redisCsw, 2)];
}
const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
const tag = `bmq${process.pid}`;
const opts = { removeOnComplete: true, removeOnFail: true };

async function prefill(queue, n) {
  for (let i = 0; i < n; i += 1000) {
    const batch = [];
    for (let k = i; k < Math.min(n, i + 1000); k++)
      batch.push({ name: 'noop', data: {}, opts });
    await queue.addBulk(batch);
  }
}

async function jobsPerSecond(concurrency, n) {
  const name = `${tag}-jobs-${concurrency}`;
  const queue = new Queue(name, { connection });
  let m = cpuMark();
  const t0 = performance.now();
  await prefill(queue, n);
  const enqueueRate = n / ((performance.now() - t0) / 1000);
  if (concurrency === 10) cpuNote('enqueue', m, n);
  let done = 0, finish;
  const all = new Promise((r) => { finish = r; });
  m = cpuMark();
  const t1 = performance.now();
  const worker = new Worker(name, async () => {
    if (++done === n) finish();
  }, { connection, concurrency });
  await all;
  const secs = (performance.now() - t1) / 1000;
  cpuNote(`jobs_${concurrency}`, m, n);
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return { rate: n / secs, enqueueRate };
}

async function flowsPerSecond(n) {
  const names = ['a', 'b', 'c'].map((s) => `${tag}-flow-${s}`);
  const fp = new FlowProducer({ connection });
  let done = 0, finish;
  const all = new Promise((r) => { finish = r; });
  const workers = names.map((q, i) => new Worker(q, async () => {
    if (i === 2 && ++done === n) finish();
  }, { connection, concurrency: 100 }));
  const m = cpuMark();
  const t0 = performance.now();
  for (let i = 0; i < n; i += 500) {
    const batch = [];
    for (let k = i; k < Math.min(n, i + 500); k++) {
      batch.push({
        name: 'c', queueName: names[2], opts,
        children: [{
          name: 'b', queueName: names[1], opts,
          children: [{ name: 'a', queueName: names[0], opts }],
        }],
      });
    }
    await fp.addBulk(batch);
  }
  await all;
  const secs = (performance.now() - t0) / 1000;
  cpuNote('flows', m, n);
  await Promise.all(workers.map((w) => w.close()));
  await fp.close();
  for (const q of names) {
    const queue = new Queue(q, { connection });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  return n / secs;
}

async function latency(samples) {
  const name = `${tag}-lat`;
  const queue = new Queue(name, { connection });
  let resolve;
  const lat = [];
  const worker = new Worker(name, async (job) => {
    lat.push(Number(process.hrtime.bigint() - BigInt(job.data.t0)) / 1000);
    resolve();
  }, { connection, concurrency: 1 });
  await worker.waitUntilReady();
  await new Promise((r) => setTimeout(r, 200));
  for (let i = 0; i < samples; i++) {
    const started = new Promise((r) => { resolve = r; });
    await queue.add('probe', { t0: process.hrtime.bigint().toString() }, opts);
    await started;
  }
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  lat.sort((x, y) => x - y);
  return { p50: lat[Math.floor(samples / 2)], p99: lat[Math.floor(samples * 0.99)] };
}

// NVB_PARTS (as in nvent_bench.c) skips the parts with no counterpart
const parts = process.env.NVB_PARTS ? process.env.NVB_PARTS.split(',') : null;
const want = (...names) => !parts || names.some((n) => parts.includes(n));
const out = { impl: 'bullmq', jobs: {} };
if (want('adapter', 'engine', 'instances', 'rss')) {
  for (const c of [1, 10, 100]) {
    const r = await jobsPerSecond(c, c === 1 ? Math.min(nJobs, 20000) : nJobs);
    out.jobs[c] = r.rate;
    out.enqueue = r.enqueueRate;
  }
}
if (want('flows'))
  out.flows = await flowsPerSecond(nFlows);
if (want('latency')) {
  const l = await latency(nLat);
  out.p50_us = l.p50;
  out.p99_us = l.p99;
}
out.rss_kb = process.resourceUsage().maxRSS;
out.cpu = cpu;
console.log(JSON.stringify(out));
process.exit(0);
