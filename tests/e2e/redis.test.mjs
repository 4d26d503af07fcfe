// Three `nvent serve` processes on one Redis (A-5, issue 6): plain jobs are
// shared out across all three and each completes once; a run started on
// one instance streams live to another (SSE-5); an instance killed with
// kill -9 mid-load loses nothing (its active jobs run elsewhere after their
// lease). Needs $NV_TEST_REDIS_URL (scripts/test.sh starts a private
// redis-server); skipped without it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { api, makeProject, openStream, startServer, until, waitRun } from './lib/nvent.mjs';

const URL = process.env.NV_TEST_REDIS_URL;

// A plain queue "work" whose result names the nvent process that ran it
// (the parent of this long-lived child); each job takes data.ms.
const WORK = `#!/usr/bin/env python3
import json, os, sys, time
def send(m):
    sys.stdout.write(json.dumps(m) + "\\n")
    sys.stdout.flush()
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "describe":
        send({"type": "config", "config": {"worker": {"concurrency": 4, "lockDurationMs": 1000, "maxStalledCount": 5},
              "queue": {"defaultJobOptions": {"removeOnComplete": False}}}})
    elif m["type"] == "job":
        time.sleep(m["data"].get("ms", 0) / 1000.0)
        send({"type": "result", "id": m["id"], "result": {"pid": os.getppid()}})
`;

function project(prefix) {
  const dir = makeProject({
    prefix,
    connections: { redis: { url: URL } },
    queue: { adapter: 'redis' }, store: { adapter: 'redis' }, stream: { adapter: 'redis' },
    shutdownGraceMs: 500,
    functions: { describeTimeoutMs: 20000 },
  }, { functions: false });
  fs.mkdirSync(path.join(dir, 'functions'));
  const f = path.join(dir, 'functions', 'work');
  fs.writeFileSync(f, WORK);
  fs.chmodSync(f, 0o755);
  return dir;
}

async function completedJobs(srv) {
  const out = [];
  for (let offset = 0; ; offset += 1000) {
    const r = await api(srv, 'GET', `/api/_queues/work/job?state=completed&limit=1000&offset=${offset}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    out.push(...r.body.jobs);
    if (!r.body.hasMore) return out;
  }
}

describe('three instances on one redis', { skip: !URL && 'NV_TEST_REDIS_URL not set' }, () => {
  let srvs = [];

  before(async () => {
    const prefix = `e2e${crypto.randomBytes(6).toString('hex')}`;
    srvs = await Promise.all([0, 1, 2].map(() => startServer(project(prefix))));
  });

  after(async () => {
    for (const s of srvs) await s.stop();
  });

  test('jobs enqueued on one instance are shared out and each completes once', async () => {
    const ids = [];
    for (let i = 0; i < 60; i++) {
      const r = await api(srvs[i % 3], 'POST', '/api/_queues/work/enqueue',
        { body: { data: { ms: 30, i }, opts: { jobId: `share-${i}` } } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      ids.push(r.body.id);
    }
    const done = await until(async () => {
      const jobs = (await completedJobs(srvs[0])).filter((j) => j.id.startsWith('share-'));
      return jobs.length === 60 && jobs;
    }, { timeoutMs: 30000 });
    assert.deepEqual(done.map((j) => j.id).sort(), [...ids].sort());
    for (const j of done) assert.equal(j.attemptsMade, 1, JSON.stringify(j));
    const pids = new Set(done.map((j) => j.returnvalue.pid));
    assert.equal(pids.size, 3, `ran on ${[...pids]}`);
  });

  test('a run started on one instance streams live to another within 1 s', async () => {
    const opened = openStream(`${srvs[1].url}/api/_stream?kinds=job&queue=work`, {
      stop: (ms) => ms.some((m) => m.data && m.data.jobId === 'live-1' && m.data.type === 'completed'),
      timeoutMs: 10000,
    });
    const reader = opened.result;
    // open: subscribed, and its announcement to the other instances is
    // published (jobs.c); 300 ms for them to hear it
    await opened.open;
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const e = await api(srvs[0], 'POST', '/api/_queues/work/enqueue',
      { body: { data: { ms: 0 }, opts: { jobId: 'live-1' } } });
    assert.equal(e.status, 201);
    const s = await reader;
    const got = s.messages.filter((m) => m.data && m.data.jobId === 'live-1').map((m) => m.data.type);
    assert.ok(got.includes('waiting') || got.includes('active'), JSON.stringify(got));
    assert.ok(got.includes('completed'), JSON.stringify(got));
    assert.ok(Date.now() - t0 < 5000);
  });

  test('an instance killed with kill -9 mid-load loses nothing', async () => {
    for (let i = 0; i < 90; i++) {
      const r = await api(srvs[i % 2], 'POST', '/api/_queues/work/enqueue',
        { body: { data: { ms: 100, i }, opts: { jobId: `kill-${i}` } } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    const victim = srvs[2];
    await until(async () => {
      const j = (await completedJobs(srvs[0])).filter((x) => x.id.startsWith('kill-'));
      return j.length >= 10;
    }, { timeoutMs: 20000 });
    victim.proc.kill('SIGKILL');
    await victim.exited;
    srvs = srvs.slice(0, 2);
    const done = await until(async () => {
      const jobs = (await completedJobs(srvs[0])).filter((x) => x.id.startsWith('kill-'));
      return jobs.length === 90 && jobs;
    }, { timeoutMs: 40000 });
    assert.equal(new Set(done.map((j) => j.id)).size, 90);
    const failed = await api(srvs[1], 'GET', '/api/_queues/work/job?state=failed&limit=1000');
    assert.equal(failed.body.jobs.filter((j) => j.id.startsWith('kill-')).length, 0);
  });
});
