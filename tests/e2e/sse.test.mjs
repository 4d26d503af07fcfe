// Live streams end to end (SSE-1..SSE-4): run streams with history then
// live events, resumed with Last-Event-ID without gaps or duplicates; the
// global stream with filters, its ring buffer and `event: reset`.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FILE_ADAPTERS, api, makeProject, openStream, readStream, startServer, until, waitRun } from './lib/nvent.mjs';
import { killAll } from './lib/nvent.mjs';

let srv;
const TERMINAL = ['flow.completed', 'flow.failed', 'flow.cancel', 'flow.stalled'];
const isTerminal = (m) => m.data && TERMINAL.includes(m.data.type);

before(async () => {
  const dir = makeProject({ ...FILE_ADAPTERS, shutdownGraceMs: 1000,
    server: { sseHeartbeatMs: 1000, maxSseClients: 6 } });
  srv = await startServer(dir);
});

after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  killAll();
  assert.equal(code, 0, srv.log);
});

async function start(flow = 'demo', input = {}) {
  const r = await api(srv, 'POST', `/api/_flows/${flow}/start`, { body: input });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.runId;
}

describe('run streams', () => {
  test('a run stream sends retry, the whole history and live events up to the terminal one', async () => {
    const runId = await start();
    const s = await readStream(`${srv.url}/api/_flows/demo/runs/${runId}/stream`,
      { stop: (ms) => ms.some(isTerminal) });
    assert.equal(s.status, 200);
    assert.equal(s.headers.get('content-type'), 'text/event-stream');
    assert.equal(s.headers.get('cache-control'), 'no-cache');
    assert.ok(s.raw.startsWith('retry: 3000\n'), s.raw.slice(0, 40));
    const events = s.messages.filter((m) => m.data);
    const run = await waitRun(srv, 'demo', runId);
    assert.deepEqual(events.map((m) => m.data), run.events);
    assert.deepEqual(events.map((m) => m.id), run.events.map((e) => e.id));
    assert.equal(s.messages.filter((m) => m.event).length, 0);
  });

  test('Last-Event-ID resumes right after the given event, without gaps or duplicates', async () => {
    const runId = await start();
    // Read the first two events, then disconnect while the run goes on.
    const first = await readStream(`${srv.url}/api/_runs/${runId}/stream`,
      { stop: (ms) => ms.filter((m) => m.data).length >= 2 });
    const seen = first.messages.filter((m) => m.data);
    assert.equal(seen.length, 2);
    const rest = await readStream(`${srv.url}/api/_runs/${runId}/stream`,
      { headers: { 'Last-Event-ID': seen[1].id }, stop: (ms) => ms.some(isTerminal) });
    const all = [...seen, ...rest.messages.filter((m) => m.data)];
    const run = await waitRun(srv, 'demo', runId);
    assert.deepEqual(all.map((m) => m.id), run.events.map((e) => e.id));
  });

  test('the after parameter works like Last-Event-ID', async () => {
    const runId = await start();
    const run = await waitRun(srv, 'demo', runId);
    const s = await readStream(`${srv.url}/api/_flows/demo/runs/${runId}/stream?after=${run.events[2].id}`,
      { stop: (ms) => ms.some(isTerminal) });
    assert.deepEqual(s.messages.filter((m) => m.data).map((m) => m.id),
      run.events.slice(3).map((e) => e.id));
  });

  test('concurrent readers of one run all see every event once', async () => {
    const runId = await start('slow');
    const readers = [1, 2, 3].map(() => readStream(`${srv.url}/api/_runs/${runId}/stream`,
      { stop: (ms) => ms.some(isTerminal), timeoutMs: 20000 }));
    await new Promise((r) => setTimeout(r, 300));
    await api(srv, 'POST', `/api/_flows/slow/runs/${runId}/cancel`);
    const run = await waitRun(srv, 'slow', runId);
    // The canceled handler may still append its step.completed after the
    // terminal event (F-16); the readers stop at the terminal event.
    const upTo = run.events.findIndex((e) => TERMINAL.includes(e.type)) + 1;
    for (const s of await Promise.all(readers))
      assert.deepEqual(s.messages.filter((m) => m.data).map((m) => m.id),
        run.events.slice(0, upTo).map((e) => e.id));
  });

  test('an unknown flow or run is a 404 JSON error before any stream', async () => {
    const a = await readStream(`${srv.url}/api/_flows/nope/runs/01890000-0000-7000-8000-000000000000/stream`);
    assert.equal(a.status, 404);
    assert.equal(a.body.error, 'flow_not_found');
    const b = await readStream(`${srv.url}/api/_runs/01890000-0000-7000-8000-000000000000/stream`);
    assert.equal(b.status, 404);
    assert.equal(b.body.error, 'run_not_found');
  });

  test('heartbeats: ": ping" comes every server.sseHeartbeatMs', async () => {
    const runId = await start();
    await waitRun(srv, 'demo', runId);
    const s = await readStream(`${srv.url}/api/_runs/${runId}/stream`,
      { stop: (ms) => ms.filter((m) => m.comment === 'ping').length >= 2, timeoutMs: 10000 });
    assert.ok(s.messages.filter((m) => m.comment === 'ping').length >= 2, s.raw);
  });
});

describe('global stream', () => {
  test('carries flow events, job and queue messages; filters narrow them', async () => {
    const streams = [
      openStream(`${srv.url}/api/_stream`,
        { stop: (ms) => ms.some((m) => m.data && m.data.kind === 'queue' && m.data.type === 'resumed') }),
      openStream(`${srv.url}/api/_stream?kinds=job&queue=hello`,
        { stop: (ms) => ms.some((m) => m.data && m.data.type === 'completed') }),
      openStream(`${srv.url}/api/_stream?flow=demo&kinds=flow.event&types=flow.start`,
        { stop: (ms) => ms.some((m) => m.data) }),
    ];
    const [reader, jobsOnly, flowOnly] = streams.map((x) => x.result);
    await Promise.all(streams.map((x) => x.open));
    const runId = await start();
    await waitRun(srv, 'demo', runId);
    await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { data: { g: 1 } } });
    await api(srv, 'POST', '/api/_queues/hello/pause');
    await api(srv, 'POST', '/api/_queues/hello/resume');
    const all = (await reader).messages.filter((m) => m.data);
    assert.ok(all.some((m) => m.data.kind === 'flow.event' && m.data.event.runId === runId));
    assert.ok(all.some((m) => m.data.kind === 'job' && m.data.queue === 'hello' && m.data.counts));
    assert.ok(all.some((m) => m.data.kind === 'queue' && m.data.type === 'paused'));
    for (const m of all) assert.match(m.id, /^\d+-\d+$/);
    const jobs = (await jobsOnly).messages.filter((m) => m.data);
    assert.ok(jobs.length > 0);
    for (const m of jobs) {
      assert.equal(m.data.kind, 'job');
      assert.equal(m.data.queue, 'hello');
    }
    const flows = (await flowOnly).messages.filter((m) => m.data);
    assert.equal(flows[0].data.kind, 'flow.event');
    assert.equal(flows[0].data.event.type, 'flow.start');
    assert.equal(flows[0].data.event.flowName, 'demo');
  });

  test('Last-Event-ID within the ring resumes without gaps; an unknown one gets event: reset', async () => {
    const opened = openStream(`${srv.url}/api/_stream?kinds=job`,
      { stop: (ms) => ms.filter((m) => m.data && m.data.type === 'completed').length >= 3 });
    const first = opened.result;
    await opened.open;
    for (let i = 0; i < 3; i++)
      await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { data: { i } } });
    const seen = (await first).messages.filter((m) => m.data);
    assert.ok(seen.length >= 6);
    // Resume after the second message: the rest arrives exactly once.
    const resumed = await readStream(`${srv.url}/api/_stream?kinds=job`,
      { headers: { 'Last-Event-ID': seen[1].id },
        stop: (ms) => ms.filter((m) => m.data).length >= seen.length - 2, timeoutMs: 10000 });
    assert.deepEqual(resumed.messages.filter((m) => m.data).slice(0, seen.length - 2).map((m) => m.id),
      seen.slice(2).map((m) => m.id));
    const reset = await readStream(`${srv.url}/api/_stream`,
      { headers: { 'Last-Event-ID': '123-4' }, stop: (ms) => ms.some((m) => m.event) });
    const msg = reset.messages.find((m) => m.event);
    assert.equal(msg.event, 'reset');
    assert.deepEqual(msg.data, {});
  });

  test('bad filter values are 400', async () => {
    const a = await readStream(`${srv.url}/api/_stream?kinds=jobs`);
    assert.equal(a.status, 400);
    assert.equal(a.body.error, 'bad_request');
  });

  test('past server.maxSseClients a new stream gets 503', async () => {
    const ctl = new AbortController();
    const open = [];
    // Streams of the tests before may still hold slots until the server
    // notices their closed sockets: a 503 here is retried until they go.
    for (let i = 0; i < 6; i++) {
      const res = await until(async () => {
        const x = await fetch(`${srv.url}/api/_stream`, { signal: ctl.signal });
        if (x.status === 200) return x;
        assert.equal(x.status, 503);
        await x.body.cancel();
        return null;
      }, { timeoutMs: 20000, stepMs: 250 });
      assert.equal(res.status, 200);
      open.push(res);
    }
    const r = await api(srv, 'GET', '/api/_stream');
    assert.equal(r.status, 503);
    assert.equal(r.body.error, 'unavailable');
    ctl.abort();
    // Closed streams free their slots once the server notices the closed
    // sockets (at the latest when it asks for a new stream).
    const again = await until(async () => {
      const s = await readStream(`${srv.url}/api/_stream`, { stop: () => true, timeoutMs: 10000 });
      return s.status === 200 && s;
    }, { timeoutMs: 20000, stepMs: 250 });
    assert.equal(again.status, 200);
  });
});

// The hub subscribes to live messages only while a stream is open, and for
// a grace period after the last one closed (NVENT_SSE_GRACE_MS here, 30 s
// by default): a reconnecting client resumes from the ring; one coming
// back after messages went by unwatched gets `event: reset`.
describe('live subscription only while streams are open', () => {
  let idle;
  before(async () => {
    const dir = makeProject({ ...FILE_ADAPTERS, shutdownGraceMs: 1000,
      server: { sseHeartbeatMs: 1000 } });
    idle = await startServer(dir, { env: { NVENT_SSE_GRACE_MS: '300' } });
  });
  after(async () => {
    if (!idle) return;
    const { code } = await idle.stop();
    assert.equal(code, 0, idle.log);
  });

  test('a reconnect within the grace period resumes; after it, a gap gets event: reset', async () => {
    const completed = (ms) => ms.some((m) => m.data && m.data.type === 'completed');
    const opened = openStream(`${idle.url}/api/_stream?kinds=job`, { stop: completed });
    const first = opened.result;
    await opened.open;
    await api(idle, 'POST', '/api/_queues/hello/enqueue', { body: { data: { i: 1 } } });
    const seen = (await first).messages.filter((m) => m.data);
    assert.ok(seen.length >= 2);
    // at once (within the grace period): the rest of the ring, no reset
    const again = await readStream(`${idle.url}/api/_stream?kinds=job`,
      { headers: { 'Last-Event-ID': seen[0].id },
        stop: (ms) => ms.filter((m) => m.data).length >= seen.length - 1, timeoutMs: 5000 });
    assert.equal(again.messages.filter((m) => m.event).length, 0, again.raw);
    assert.deepEqual(again.messages.filter((m) => m.data).map((m) => m.id),
      seen.slice(1).map((m) => m.id));
    // past the grace period nobody listens: a job goes by unwatched
    await new Promise((r) => setTimeout(r, 1000));
    await api(idle, 'POST', '/api/_queues/hello/enqueue', { body: { data: { i: 2 } } });
    await new Promise((r) => setTimeout(r, 500));
    const late = await readStream(`${idle.url}/api/_stream?kinds=job`,
      { headers: { 'Last-Event-ID': seen[seen.length - 1].id },
        stop: (ms) => ms.some((m) => m.event), timeoutMs: 5000 });
    const msg = late.messages.find((m) => m.event);
    assert.ok(msg, late.raw);
    assert.equal(msg.event, 'reset');
  });
});
