// Differential test of nvent's cron engine (src/sched/cron.c, tz.c) against
// cron-parser (pinned in package-lock.json), a maintained npm library nvent
// did not write. Usage: node diff.mjs <path to build/cron-dump> [seed] [n].
//
// Thousands of seeded random expressions x start times x zones are run
// through both; for each case the next due times must be identical.
//
// Where SPEC.md and cron-parser disagree, SPEC wins, and the reference is
// built from cron-parser plus the SPEC rule, never from nvent's code:
//
//  * CRON-7 (daylight saving). cron-parser in a zone moves a due time that
//    falls in a gap forward by the gap's length (02:30 -> 03:30), fires every
//    due time of a gap separately, skips some gap times altogether (Lord
//    Howe's 30-minute gap), and fires repeated local times twice in a fold
//    for hourly and finer expressions. SPEC: a gap time fires once at the
//    first instant after the gap, all due times of one gap give one fire, and
//    a repeated local time fires at its first occurrence only. Reference:
//    cron-parser's due times on the local wall clock (computed in UTC, where
//    no DST exists), each mapped to an instant by the CRON-7 rule using the
//    zone data of node's Intl (ICU), not nvent's.
//  * CRON-4 (the '*' rule). cron-parser ORs day of month and day of week
//    whenever both are restricted, also when one of them is written with a
//    leading '*' ("*/2", "*/1"); SPEC (like Vixie cron) ORs them only when
//    neither text starts with '*', else a day must match both. Reference:
//    cron-parser's sequence filtered to the days matching both of its own
//    parsed day sets.
//  * CRON-5 (never matches). Both refuse February 30th; nvent also refuses an
//    expression with no due time in the next 10 years where cron-parser
//    would go on searching. The reference sequence ends there too.
//  * CRON-2 (lists). cron-parser refuses a list whose items overlap
//    ("*/2,*/3", "SAT,6": "duplicate values found"); SPEC allows any list.
//    Reference: each such list rewritten as the union of its items' values,
//    every item expanded by cron-parser itself.
//  * CRON-1 (field count). cron-parser accepts 1 to 4 fields (filling in the
//    rest); SPEC refuses anything but 5 or 6 fields.
//  * cron-parser accepts L, W, #, ? and more; nvent refuses them (CRON-5).
//    The generator does not produce them (unit tests cover the refusal);
//    expressions both must refuse (out of range, reversed ranges, step 0,
//    unknown names) are generated and checked.
//
// Every native cron-parser difference is counted by category in the summary;
// a difference that fits no category fails the test.

import { spawnSync } from 'node:child_process';

// The wall-clock side runs in the process zone, which must be UTC (no DST):
// much faster in luxon than an explicit 'UTC' zone.
process.env.TZ = 'UTC';
import { CronExpressionParser } from 'cron-parser';

const dumpBin = process.argv[2];
const seed = Number(process.argv[3] ?? 20251126);
const nExpr = Number(process.argv[4] ?? 1000);
const PER_EXPR = 2;              // (zone, start) pairs per expression
const FIRES = 6;                 // due times compared per case
const HOUR = 3600e3, DAY = 24 * HOUR;
const HORIZON_YEARS = 10;

if (!dumpBin) {
  console.error('usage: node diff.mjs <cron-dump> [seed] [count]');
  process.exit(2);
}

// ---- seeded generator ----

let rs = seed >>> 0;
function rnd() { // mulberry32
  rs = (rs + 0x6d2b79f5) >>> 0;
  let t = rs;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const ri = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const pick = (a) => a[Math.floor(rnd() * a.length)];

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const FIELDS = {
  sec: { lo: 0, hi: 59 }, min: { lo: 0, hi: 59 }, hour: { lo: 0, hi: 23 },
  dom: { lo: 1, hi: 31 }, mon: { lo: 1, hi: 12, names: MONTHS },
  dow: { lo: 0, hi: 7, names: DAYS },
};
const ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe',
  'Asia/Kathmandu', 'Australia/Sydney'];

function randCase(s) {
  const r = rnd();
  return r < 0.4 ? s : r < 0.7 ? s.toLowerCase() : s[0] + s.slice(1).toLowerCase();
}

function value(f, hi = f.hi) {
  const v = ri(f.lo, hi);
  if (f.names && rnd() < 0.3 && v - f.lo < f.names.length) return randCase(f.names[v - f.lo]);
  return String(v);
}

function item(f) {
  const r = rnd();
  if (r < 0.35) return value(f);
  if (r < 0.55) {
    const a = ri(f.lo, f.hi), b = ri(a, f.hi);
    const name = (v) => (f.names && rnd() < 0.3 && v - f.lo < f.names.length
      ? randCase(f.names[v - f.lo]) : String(v));
    return `${name(a)}-${name(b)}` + (rnd() < 0.3 ? `/${ri(1, 12)}` : '');
  }
  if (r < 0.75) return `*/${ri(1, Math.max(2, Math.floor((f.hi - f.lo) / 2)))}`;
  return `${ri(f.lo, f.hi)}/${ri(1, 15)}`;
}

function field(key) {
  const f = FIELDS[key];
  const star = { sec: 0.5, min: 0.25, hour: 0.4, dom: 0.6, mon: 0.7, dow: 0.6 }[key];
  if (rnd() < star) return '*';
  const n = rnd() < 0.7 ? 1 : ri(2, 4);
  return Array.from({ length: n }, () => item(f)).join(',');
}

// An expression both must refuse: one field broken on purpose.
function invalidExpr() {
  const parts = ['sec', 'min', 'hour', 'dom', 'mon', 'dow'].map(field).slice(1);
  const keys = ['min', 'hour', 'dom', 'mon', 'dow'];
  const k = ri(0, 4), f = FIELDS[keys[k]];
  switch (ri(0, 4)) {
    case 0: parts[k] = String(f.hi + ri(1, 40)); break;
    case 1: parts[k] = `${f.hi}-${f.lo}`; break;
    case 2: parts[k] = `*/0`; break;
    case 3: parts[k] = keys[k] === 'mon' ? 'FOO' : keys[k] === 'dow' ? 'XYZ' : 'abc'; break;
    default: return parts.slice(0, ri(1, 4)).join(' ');
  }
  return parts.join(' ');
}

function startTime(zone) {
  const year = ri(2000, 2045);
  if (rnd() < 0.6) {
    // shortly before (or after) a real offset change of the zone, if any
    const t = findTransition(zone, Date.UTC(year, pick([2, 3, 8, 9, 10]), 1));
    if (t !== null) return t - ri(0, 36 * 3600) * 1000 + pick([0, 0, 500]) + (rnd() < 0.2 ? ri(0, 6) * HOUR : 0);
  }
  return Date.UTC(year, ri(0, 11), ri(1, 28), ri(0, 23), ri(0, 59), ri(0, 59), pick([0, 999]));
}

// First offset change in the 31 days from 'from' (to the second), or null.
function findTransition(zone, from) {
  let lo = null;
  for (let d = 0; d < 31; d++) {
    if (offsetMs(zone, from + d * DAY) !== offsetMs(zone, from + (d + 1) * DAY)) {
      lo = from + d * DAY;
      break;
    }
  }
  if (lo === null) return null;
  let hi = lo + DAY;
  const before = offsetMs(zone, lo);
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (offsetMs(zone, mid) === before) lo = mid; else hi = mid;
  }
  return hi;
}

// ---- zone data from Intl (ICU), independent of nvent ----

// Offsets of the years tested change at whole minutes: cache by minute.
const fmts = new Map(), offCache = new Map();
function offsetMs(zone, t) {
  const key = `${zone} ${Math.floor(t / 60000)}`;
  let v = offCache.get(key);
  if (v === undefined) {
    v = readOffset(zone, t);
    if (offCache.size > 1e6) offCache.clear();
    offCache.set(key, v);
  }
  return v;
}

function readOffset(zone, t) {
  let f = fmts.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' });
    fmts.set(zone, f);
  }
  const name = f.formatToParts(new Date(t)).find((p) => p.type === 'timeZoneName').value;
  const m = /^GMT(?:([+-])(\d\d):(\d\d)(?::(\d\d))?)?$/.exec(name);
  if (!m) throw new Error(`cannot read offset ${name}`);
  if (!m[1]) return 0;
  const v = (Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4] ?? 0)) * 1000;
  return m[1] === '-' ? -v : v;
}

// CRON-7: the instant a local wall time (ms, as if UTC) fires at: its first
// occurrence, else the first instant after the gap it falls in.
function wallToInstant(zone, wall) {
  const o1 = offsetMs(zone, wall - 26 * HOUR), o2 = offsetMs(zone, wall + 26 * HOUR);
  const cands = [...new Set([o1, o2])].map((o) => wall - o)
    .filter((t) => offsetMs(zone, t) === wall - t).sort((a, b) => a - b);
  if (cands.length) return cands[0];
  // a gap: the offset rises from min to max; find the change by bisection
  let lo = wall - Math.max(o1, o2), hi = wall - Math.min(o1, o2);
  const before = offsetMs(zone, lo);
  while (hi - lo > 1000) {
    const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
    if (offsetMs(zone, mid) === before) lo = mid; else hi = mid;
  }
  return hi;
}

function hasTransition(zone, a, b) {
  for (let t = a; t < b; t += 6 * HOUR) {
    if (offsetMs(zone, t) !== offsetMs(zone, Math.min(t + 6 * HOUR, b))) return true;
  }
  return false;
}

// ---- the two sides ----

function addYears(ms, n) {
  const d = new Date(ms);
  const day = d.getUTCMonth() === 1 && d.getUTCDate() === 29 ? 28 : d.getUTCDate();
  return Date.UTC(d.getUTCFullYear() + n, d.getUTCMonth(), day, d.getUTCHours(),
    d.getUTCMinutes(), d.getUTCSeconds());
}

// cron-parser refuses a list whose items overlap ("*/2,*/3": "duplicate
// values found"); CRON-2 allows any list. Rewrite each field as the sorted
// union of its items' values, each item expanded by cron-parser alone.
const FIELD_KEYS = ['second', 'minute', 'hour', 'dayOfMonth', 'month', 'dayOfWeek'];
function dedupe(expr) {
  const tokens = expr.trim().split(/\s+/);
  const six = tokens.length === 6;
  return tokens.map((tok, i) => {
    const key = FIELD_KEYS[six ? i : i + 1];
    if (!tok.includes(',')) return tok;   // only lists can overlap
    const vals = new Set();
    for (const itemText of tok.split(',')) {
      const probe = (six ? ['0', '*', '*', '*', '*', '*'] : ['*', '*', '*', '*', '*']);
      probe[i] = itemText;
      const f = CronExpressionParser.parse(probe.join(' ')).fields[key];
      for (const v of f.values) vals.add(key === 'dayOfWeek' && v === 7 ? 0 : v);
    }
    return [...vals].sort((a, b) => a - b).join(',');
  }).join(' ');
}

const deduped = new Map();
function parseLib(expr, options) {
  const text = deduped.get(expr) ?? expr;
  try {
    return CronExpressionParser.parse(text, options);
  } catch (e) {
    if (text !== expr || !/duplicate values/.test(e.message)) throw e;
    deduped.set(expr, dedupe(expr));
    return CronExpressionParser.parse(deduped.get(expr), options);
  }
}

// Reference per SPEC: cron-parser on the wall clock (+ CRON-4 filter when
// SPEC ANDs the day fields), mapped through CRON-7.
function reference(expr, zone, start, n) {
  let it;
  try {
    it = parseLib(expr, { currentDate: new Date(start + offsetMs(zone, start)) });
  } catch (e) {
    return { error: e.message };
  }
  const tokens = expr.trim().split(/\s+/);
  const [domText, dowText] = tokens.length === 6 ? [tokens[3], tokens[4 + 1]] : [tokens[2], tokens[4]];
  const and = domText !== undefined && dowText !== undefined &&
    (domText.startsWith('*') || dowText.startsWith('*'));
  const domSet = new Set(it.fields.dayOfMonth.values);
  const dowSet = new Set(it.fields.dayOfWeek.values.map((d) => (d === 7 ? 0 : d)));
  const out = [];
  let last = start, lastWall = start + offsetMs(zone, start), filtered = 0;
  for (let guard = 0; out.length < n && guard < 20000; guard++) {
    let wall;
    try {
      wall = it.next().getTime();
    } catch {
      return { times: out, ended: true, filtered };
    }
    const d = new Date(wall);
    if (and && !(domSet.has(d.getUTCDate()) && dowSet.has(d.getUTCDay()))) {
      // not a due day under SPEC: go on from the next day's midnight
      filtered++;
      const next = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
      it.reset(new Date(next - 1));
      continue;
    }
    if (wall > addYears(lastWall - (lastWall % 1000), HORIZON_YEARS)) return { times: out, ended: true, filtered };
    const t = wallToInstant(zone, wall);
    if (t > last) {
      out.push(t);
      last = t;
      lastWall = t + offsetMs(zone, t);
    }
  }
  return { times: out, ended: out.length < n, filtered };
}

function native(expr, zone, start, n) {
  try {
    const it = parseLib(expr, { currentDate: new Date(start), tz: zone });
    const out = [];
    for (let i = 0; i < n; i++) out.push(it.next().getTime());
    return out;
  } catch {
    return null;
  }
}

function parseDump(line) {
  if (line.startsWith('err ')) return { error: line.slice(4) };
  const [head, tail] = line.split(' #err ');
  const times = head.split(' ').slice(1).map(Number);
  return { times, ended: tail !== undefined, why: tail };
}

// ---- run ----

const t0 = Date.now();
const cases = [];
for (let i = 0; i < nExpr; i++) {
  const invalid = rnd() < 0.08;
  let expr;
  if (invalid) expr = invalidExpr();
  else {
    const six = rnd() < 0.15;
    expr = ['sec', 'min', 'hour', 'dom', 'mon', 'dow'].map(field).slice(six ? 0 : 1).join(rnd() < 0.1 ? '\t' : ' ');
  }
  for (let k = 0; k < (invalid ? 1 : PER_EXPR); k++) {
    const zone = pick(ZONES);
    cases.push({ expr, zone, start: startTime(zone), invalid });
  }
}

const input = cases.map((c) => `${c.expr}|${c.zone}|${c.start}|${FIRES}\n`).join('');
const run = spawnSync(dumpBin, { input, encoding: 'utf8', maxBuffer: 1 << 28 });
if (run.status !== 0) {
  console.error(`cron-dump failed: ${run.stderr || run.error}`);
  process.exit(1);
}
const lines = run.stdout.split('\n');

const iso = (t) => new Date(t).toISOString();
const failures = [];
const diffs = { 'CRON-7': [], 'CRON-4': [], 'CRON-2': [], 'CRON-5': [], 'CRON-1': [] };
let compared = 0, refusedBoth = 0;

cases.forEach((c, i) => {
  const ours = parseDump(lines[i]);
  const ref = reference(c.expr, c.zone, c.start, FIRES);
  const where = `'${c.expr.replace(/\t/g, '\\t')}' in ${c.zone} after ${iso(c.start)}`;
  if (c.invalid || ref.error || ours.error) {
    const nf = c.expr.trim().split(/\s+/).length;
    const oursRefuses = ours.error || (ours.times.length === 0 && /never matches/.test(ours.why));
    if (ref.error && oursRefuses) refusedBoth++;
    else if (ours.error && nf < 5 && !ref.error) {
      diffs['CRON-1'].push(`${where}: cron-parser accepts ${nf} fields, SPEC needs 5 or 6`);
    }
    else if (ours.error && /never matches/.test(ours.error) && ref.times && ref.times.length === 0) {
      diffs['CRON-5'].push(`${where}: nvent refuses (no due time within 10 years)`);
    } else {
      failures.push(`${where}: nvent ${ours.error ? 'refuses: ' + ours.error : 'accepts'}, ` +
        `cron-parser ${ref.error ? 'refuses: ' + ref.error : 'accepts'}`);
    }
    return;
  }
  const a = ours.times.map(iso).join(' '), b = ref.times.map(iso).join(' ');
  compared += ours.times.length;
  if (a !== b || (ours.ended && !ref.ended)) {
    failures.push(`${where}:\n   nvent     ${a}${ours.ended ? ' [' + ours.why + ']' : ''}\n   reference ${b}${ref.ended ? ' [ended]' : ''}`);
    return;
  }
  if (ours.ended) diffs['CRON-5'].push(`${where}: ${ours.why}`);
  // Where does cron-parser's own zone handling differ, and is it explained?
  // (Checked near offset changes, for the CRON-4 cases, and for every
  // fourth case as a check of the reference itself.)
  const end = ours.times.length ? ours.times[ours.times.length - 1] : c.start;
  if (!(ref.filtered > 0 || i % 4 === 0 || hasTransition(c.zone, c.start - DAY, end + DAY))) return;
  const nat = native(c.expr, c.zone, c.start, ours.times.length);
  if (nat === null || nat.map(iso).join(' ') === a) return;
  const k = nat.findIndex((t, j) => t !== ours.times[j]);
  const lo = Math.min(nat[k], ours.times[k], k > 0 ? ours.times[k - 1] : c.start);
  const hi = Math.max(nat[k], ours.times[k]);
  const note = `${where}: cron-parser ${iso(nat[k])}, SPEC ${iso(ours.times[k])}`;
  if (ref.filtered > 0) diffs['CRON-4'].push(note);
  else if (hasTransition(c.zone, lo - DAY, hi + DAY)) diffs['CRON-7'].push(note);
  else failures.push(`${note} (unexplained difference from cron-parser's own zone handling)`);
});

diffs['CRON-2'] = [...deduped.keys()].map((e) => `'${e}': cron-parser refuses overlapping list items`);
const secs = ((Date.now() - t0) / 1000).toFixed(1);
console.log(`cron-diff: seed ${seed}, ${cases.length} cases, ${compared} due times compared, ` +
  `${refusedBoth} refused by both, ${secs} s`);
for (const [k, v] of Object.entries(diffs)) {
  console.log(`  intentional (${k}): ${v.length} case(s) where cron-parser alone would differ` +
    (v.length ? `, e.g. ${v[0]}` : ''));
}
if (failures.length) {
  console.log(`FAIL: ${failures.length} case(s) differ:`);
  for (const f of failures.slice(0, 15)) console.log(` - ${f}`);
  process.exit(1);
}
console.log('cron-diff: ok');
