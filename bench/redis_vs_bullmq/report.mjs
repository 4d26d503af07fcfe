// The table of the redis_vs_bullmq bench (run.sh): reads the JSON lines
// of the rounds, nvent's in one file and BullMQ's in another (round k of
// one was run next to round k of the other), and prints per measure the
// median of each side, the median of the rounds' own ratios and their
// range. A ratio is taken within its round, so that a VM whose speed
// changes between rounds moves both sides of it alike.
//   node report.mjs <nvent rounds file> <bullmq rounds file>
import { readFileSync } from 'node:fs';

const lines = (f) => readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const nv = lines(process.argv[2]);
const bm = lines(process.argv[3]);
const rounds = Math.min(nv.length, bm.length);

const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const pick = (get, o) => { try { return get(o); } catch { return undefined; } };
// per round: [nvent value, bullmq value]
const pairsOf = (getN, getB) => Array.from({ length: rounds }, (_, k) => [pick(getN, nv[k]), getB ? pick(getB, bm[k]) : undefined]);
const f0 = (x) => x === undefined ? '-' : Math.round(x).toString();
const f1 = (x) => x === undefined ? '-' : x.toFixed(1);
const fr = (x) => x === undefined ? '-' : x.toFixed(2) + 'x';

// better: 'rate' (nvent/bullmq) or 'less' (bullmq/nvent, latency and memory)
function row(label, getN, getB, better, fmt = f0) {
  const p = pairsOf(getN, getB);
  const ratios = p.map(([a, b]) => a === undefined || b === undefined || !a || !b ? undefined
    : better === 'rate' ? a / b : b / a).filter((x) => x !== undefined);
  const range = ratios.length > 1 ? `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}` : '-';
  return [label, fmt(median(p.map((x) => x[0]))), getB ? fmt(median(p.map((x) => x[1]))) : '-',
    fr(median(ratios)), range];
}

const mb = (kb) => kb === undefined ? undefined : kb / 1024;
const rows = [];
for (const c of ['1', '10', '100']) {
  rows.push(row(`no-op jobs/s, concurrency ${c} (adapter)`, (o) => o.jobs[c], (o) => o.jobs[c], 'rate'));
  if (nv.some((o) => o.engine_jobs))
    rows.push(row(`no-op jobs/s, concurrency ${c} (engine)`, (o) => o.engine_jobs[c], (o) => o.jobs[c], 'rate'));
}
if (nv.some((o) => o.instances))
  for (const k of ['1', '2', '3'])
    rows.push(row(`no-op jobs/s, ${k} instance(s) x 10 workers`, (o) => o.instances[k], null, 'rate'));
rows.push(row('enqueue jobs/s', (o) => o.enqueue, (o) => o.enqueue, 'rate'));
rows.push(row('3-step flows/s, started in bulk (500)', (o) => o.flows, (o) => o.flows, 'rate'));
if (nv.some((o) => o.flows_1 !== undefined))
  rows.push(row('3-step flows/s, started one at a time', (o) => o.flows_1, (o) => o.flows, 'rate'));
if (nv.some((o) => o.flows_4t !== undefined))
  rows.push(row('3-step flows/s, started by 4 threads', (o) => o.flows_4t, (o) => o.flows, 'rate'));
if (nv.some((o) => o.ceiling !== undefined))
  rows.push(row('3-step flows/s, async ceiling (see below)', (o) => o.ceiling, (o) => o.flows, 'rate'));
rows.push(row('enqueue->start p50 (us)', (o) => o.p50_us, (o) => o.p50_us, 'less'));
rows.push(row('enqueue->start p99 (us)', (o) => o.p99_us, (o) => o.p99_us, 'less'));
rows.push(row('peak RSS (MB)', (o) => mb(o.rss_kb), (o) => mb(o.rss_kb), 'less', f1));
if (nv.some((o) => o.worker_rss_kb))
  for (const [k, label] of [['10', 'conc. 10'], ['100', 'conc. 100'], ['100a2', 'conc. 100, 2 arenas']])
    rows.push(row(`worker RSS, ${label} (MB)`, (o) => mb(o.worker_rss_kb[k]), (o) => mb(o.rss_kb), 'less', f1));

const pad = (widths) => (r) => r.map((s, i) => i ? s.padStart(widths[i]) : s.padEnd(widths[0])).join('');
const p1 = pad([40, 10, 10, 10, 12]);
console.log(p1(['measure', 'nvent', 'bullmq', 'ratio', 'range']));
for (const r of rows) console.log(p1(r));
console.log(`${rounds} round(s); nvent and bullmq: medians; ratio: median of the rounds' ratios, range: their lowest-highest`);
console.log('ratio: nvent/bullmq for rates, bullmq/nvent for latency and memory (>1 = nvent better)');
if (nv.some((o) => o.ceiling !== undefined))
  console.log(`async ceiling: not nvent; the ${median(nv.map((o) => o.ceiling_calls))} script calls of one flow of the engine (recorded with MONITOR) replayed by one thread on one connection, 100 flows in flight, each call sent when the flow's last reply is in: what the engine would get from today's scripts if it never put a thread to sleep per call (ceiling.c)`);

// CPU and context switches per job (per flow): [client us, redis us,
// client switches, redis switches], medians over the rounds
const cpuPairs = [];
for (const k of ['1', '10', '100']) {
  cpuPairs.push([`jobs, concurrency ${k} (adapter)`, `adapter_${k}`, `jobs_${k}`]);
  cpuPairs.push([`jobs, concurrency ${k} (engine)`, `engine_${k}`, `jobs_${k}`]);
}
for (const k of ['1', '2', '3'])
  cpuPairs.push([`jobs, ${k} instance(s) x 10 workers`, `instances_${k}`, null]);
cpuPairs.push(['enqueue', 'enqueue', 'enqueue']);
cpuPairs.push(['3-step flows, bulk (per flow)', 'flows', 'flows']);
cpuPairs.push(['3-step flows, one at a time', 'flows_1', 'flows']);
cpuPairs.push(['3-step flows, 4 starting threads', 'flows_4t', 'flows']);
cpuPairs.push(['3-step flows, async ceiling', 'ceiling', 'flows']);
const cpuOf = (list, key, i) => key === null ? undefined : median(list.slice(0, rounds).map((o) => (o.cpu || {})[key]?.[i]));
const p2 = pad([36, 9, 9, 9, 9, 9]);
for (const [title, i0, fmt, note] of [
  ['CPU us per job', 0, f1, 'CPU: of the bench process and of redis-server; ratio: bullmq/nvent totals (>1 = nvent cheaper)'],
  ['switches per job', 2, (x) => x === undefined ? '-' : x.toFixed(2), 'switches: context switches (voluntary + involuntary) of the bench process (every thread) and of the main thread of redis-server; ratio: bullmq/nvent totals'],
]) {
  console.log('');
  console.log(p2([title, 'nvent', 'redis', 'bullmq', 'redis', 'ratio']));
  for (const [label, nk, bk] of cpuPairs) {
    const a = [cpuOf(nv, nk, i0), cpuOf(nv, nk, i0 + 1)];
    const b = [cpuOf(bm, bk, i0), cpuOf(bm, bk, i0 + 1)];
    const ta = a[0] === undefined || a[1] === undefined ? undefined : a[0] + a[1];
    const tb = b[0] === undefined || b[1] === undefined ? undefined : b[0] + b[1];
    console.log(p2([label, fmt(a[0]), fmt(a[1]), fmt(b[0]), fmt(b[1]), ta && tb ? fr(tb / ta) : '-']));
  }
  console.log(`${note}; medians over the rounds`);
}
