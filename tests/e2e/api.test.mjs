// HTTP API end to end (§16): every endpoint's success path and every
// error class of API-2, against the real binary with process functions
// (tests/e2e/fixtures/functions) on the file adapters.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { FILE_ADAPTERS, api, makeProject, startServer, until, waitRun } from './lib/nvent.mjs';
import { killAll } from './lib/nvent.mjs';

let srv;

before(async () => {
  const dir = makeProject({ ...FILE_ADAPTERS, shutdownGraceMs: 1000,
    server: { maxBodyBytes: 4096 } });
  srv = await startServer(dir);
});

after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  killAll();
  assert.equal(code, 0, srv.log);
});

function assertJsonHeaders(r) {
  assert.equal(r.headers.get('content-type'), 'application/json; charset=utf-8');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.headers.get('access-control-allow-origin'), null);
}

function assertError(r, status, code) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assertJsonHeaders(r);
  assert.equal(r.body.error, code);
  assert.equal(typeof r.body.message, 'string');
  assert.deepEqual(Object.keys(r.body).sort(), ['error', 'message']);
}

async function startDemo(input = { order: 7 }) {
  const r = await api(srv, 'POST', '/api/_flows/demo/start', { body: input });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

describe('flows and runs', () => {
  test('GET /api/_flows lists the analyzed flows sorted by name', async () => {
    const r = await api(srv, 'GET', '/api/_flows');
    assert.equal(r.status, 200);
    assertJsonHeaders(r);
    assert.deepEqual(r.body.map((f) => f.id), ['demo', 'slow']);
    const demo = r.body[0];
    assert.equal(demo.entry.step, 'first');
    assert.equal(demo.entry.runtime, 'process');
    assert.deepEqual(demo.analyzed.levels, [['first'], ['second']]);
    assert.deepEqual(demo.warnings, []);
  });

  test('POST start answers 201 with the entry job and the run id, and the run completes', async () => {
    const b = await startDemo();
    assert.deepEqual(Object.keys(b).sort(), ['flowId', 'id', 'queue', 'runId', 'step']);
    assert.equal(b.id, `${b.runId}__first`);
    assert.equal(b.flowId, b.runId);
    assert.equal(b.queue, 'first');
    const run = await waitRun(srv, 'demo', b.runId);
    assert.equal(run.status, 'completed');
    assert.equal(run.events[0].type, 'flow.start');
    assert.deepEqual(run.events[0].data.input, { order: 7 });
    assert.equal(run.events.at(-1).type, 'flow.completed');
  });

  test('an empty start body counts as {}', async () => {
    const r = await api(srv, 'POST', '/api/_flows/demo/start');
    assert.equal(r.status, 201);
    const run = await waitRun(srv, 'demo', r.body.runId);
    assert.deepEqual(run.events[0].data.input, {});
  });

  test('GET run filters events by types, after and limit, and /api/_runs/:id is the same run', async () => {
    const { runId } = await startDemo();
    const full = await waitRun(srv, 'demo', runId);
    const types = await api(srv, 'GET', `/api/_flows/demo/runs/${runId}?types=flow.start,flow.completed`);
    assert.deepEqual(types.body.events.map((e) => e.type), ['flow.start', 'flow.completed']);
    const afterFirst = await api(srv, 'GET', `/api/_flows/demo/runs/${runId}?after=${full.events[0].id}&limit=2`);
    assert.deepEqual(afterFirst.body.events, full.events.slice(1, 3));
    assert.equal(afterFirst.body.hasMore, true);
    const any = await api(srv, 'GET', `/api/_runs/${runId}`);
    assert.equal(any.status, 200);
    assert.equal(any.body.flowName, 'demo');
    assert.deepEqual(any.body.events, full.events);
  });

  test('GET runs lists newest first with the status filter before pagination', async () => {
    const a = await startDemo();
    const b = await startDemo();
    await waitRun(srv, 'demo', a.runId);
    await waitRun(srv, 'demo', b.runId);
    const r = await api(srv, 'GET', '/api/_flows/demo/runs?limit=1&status=completed');
    assert.equal(r.status, 200);
    assert.equal(r.body.flowName, 'demo');
    assert.equal(r.body.limit, 1);
    assert.equal(r.body.offset, 0);
    assert.equal(r.body.count, 1);
    assert.ok(r.body.total >= 2);
    assert.equal(r.body.hasMore, true);
    assert.equal(r.body.items[0].id, b.runId);
    const none = await api(srv, 'GET', '/api/_flows/demo/runs?status=stalled');
    assert.equal(none.body.total, 0);
  });

  test('runs list query values are validated', async () => {
    assertError(await api(srv, 'GET', '/api/_flows/demo/runs?limit=0'), 400, 'bad_request');
    assertError(await api(srv, 'GET', '/api/_flows/demo/runs?limit=101'), 400, 'bad_request');
    assertError(await api(srv, 'GET', '/api/_flows/demo/runs?offset=-1'), 400, 'bad_request');
    assertError(await api(srv, 'GET', '/api/_flows/demo/runs?status=done'), 400, 'bad_request');
    assertError(await api(srv, 'GET', '/api/_flows/recent-runs?limit=51'), 400, 'bad_request');
  });

  test('recent runs answers {count, items} with flowDisplayName', async () => {
    await startDemo();
    const r = await api(srv, 'GET', '/api/_flows/recent-runs?limit=2');
    assert.equal(r.status, 200);
    assert.equal(r.body.count, 2);
    assert.equal(r.body.items.length, 2);
    assert.equal(r.body.items[0].flowDisplayName, r.body.items[0].flowName);
  });

  test('cancel answers {success, runId, flowName}; a second cancel is 409 run_not_running', async () => {
    const r = await api(srv, 'POST', '/api/_flows/slow/start', { body: {} });
    assert.equal(r.status, 201);
    const c = await api(srv, 'POST', `/api/_flows/slow/runs/${r.body.runId}/cancel`);
    assert.equal(c.status, 200, JSON.stringify(c.body));
    assert.deepEqual(c.body, { success: true, runId: r.body.runId, flowName: 'slow' });
    const run = await waitRun(srv, 'slow', r.body.runId);
    assert.equal(run.status, 'canceled');
    assertError(await api(srv, 'POST', `/api/_flows/slow/runs/${r.body.runId}/cancel`), 409, 'run_not_running');
  });

  test('restart answers 201 with the old and the new run', async () => {
    const { runId } = await startDemo({ again: true });
    await waitRun(srv, 'demo', runId);
    const r = await api(srv, 'POST', `/api/_flows/demo/runs/${runId}/restart`);
    assert.equal(r.status, 201);
    assert.equal(r.body.success, true);
    assert.equal(r.body.oldRunId, runId);
    assert.equal(r.body.flowName, 'demo');
    const run = await waitRun(srv, 'demo', r.body.newRunId);
    assert.equal(run.events[0].data.restartOf, runId);
    assert.deepEqual(run.events[0].data.input, { again: true });
  });

  test('a run addressed under another flow is run_not_found', async () => {
    const { runId } = await startDemo();
    assertError(await api(srv, 'GET', `/api/_flows/slow/runs/${runId}`), 404, 'run_not_found');
    assertError(await api(srv, 'GET', '/api/_runs/01890000-0000-7000-8000-000000000000'), 404, 'run_not_found');
  });

  test('rebuild-index answers {flows, runs} and refuses unknown members', async () => {
    const r = await api(srv, 'POST', '/api/_flows/rebuild-index', { body: { flow: 'demo' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok('flows' in r.body && 'runs' in r.body);
    const all = await api(srv, 'POST', '/api/_flows/rebuild-index');
    assert.equal(all.status, 200);
    assertError(await api(srv, 'POST', '/api/_flows/rebuild-index', { body: { flows: 'demo' } }), 400, 'bad_request');
  });

  test('clear history removes finished runs and keeps running ones', async () => {
    const running = await api(srv, 'POST', '/api/_flows/slow/start', { body: {} });
    const r = await api(srv, 'DELETE', '/api/_flows/slow/clear-history');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.success, true);
    assert.equal(r.body.flowName, 'slow');
    assert.equal(typeof r.body.deletedStreams, 'number');
    const still = await api(srv, 'GET', `/api/_flows/slow/runs/${running.body.runId}`);
    assert.equal(still.status, 200);
    await api(srv, 'POST', `/api/_flows/slow/runs/${running.body.runId}/cancel`);
  });
});

describe('schedules', () => {
  test('create, list per flow and overall, delete; unknown id is schedule_not_found', async () => {
    const c = await api(srv, 'POST', '/api/_flows/demo/schedule',
      { body: { cron: '0 0 1 1 *', tz: 'Europe/Paris', input: { s: 1 }, metadata: { description: 'yearly' } } });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    assert.equal(c.body.flowName, 'demo');
    const list = await api(srv, 'GET', '/api/_flows/demo/schedules');
    assert.equal(list.status, 200);
    assert.ok(list.body.some((s) => s.id === c.body.id));
    const all = await api(srv, 'GET', '/api/_schedules');
    assert.ok(all.body.some((s) => s.id === c.body.id));
    const d = await api(srv, 'DELETE', `/api/_flows/demo/schedules/${c.body.id}`);
    assert.equal(d.status, 200);
    assert.deepEqual(d.body, { success: true, message: 'Schedule deleted successfully' });
    assertError(await api(srv, 'DELETE', `/api/_flows/demo/schedules/${c.body.id}`), 404, 'schedule_not_found');
  });

  test('schedule errors: both cron and delay, bad cron, unknown flow', async () => {
    assertError(await api(srv, 'POST', '/api/_flows/demo/schedule', { body: { cron: '* * * * *', delay: 5 } }), 400, 'bad_request');
    assertError(await api(srv, 'POST', '/api/_flows/demo/schedule', { body: { cron: 'not a cron' } }), 400, 'invalid_cron');
    assertError(await api(srv, 'POST', '/api/_flows/nope/schedule', { body: { delay: 1000 } }), 404, 'flow_not_found');
  });
});

describe('queues and jobs', () => {
  test('GET /api/_queues lists every queue with counts, config and function', async () => {
    const r = await api(srv, 'GET', '/api/_queues');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.map((q) => q.name), ['first', 'hello', 'second', 'sleeper']);
    const hello = r.body[1];
    assert.deepEqual(Object.keys(hello.counts).sort(),
      ['active', 'completed', 'delayed', 'failed', 'paused', 'waiting']);
    assert.equal(hello.function.runtime, 'process');
    const one = await api(srv, 'GET', '/api/_queues/hello');
    assert.equal(one.status, 200);
    assert.equal(one.body.name, 'hello');
  });

  test('enqueue answers 201, then 200 with created false for the same jobId', async () => {
    const a = await api(srv, 'POST', '/api/_queues/hello/enqueue',
      { body: { data: { x: 1 }, opts: { jobId: 'dedup-1' } } });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    assert.equal(a.body.id, 'dedup-1');
    assert.equal(a.body.name, 'hello');
    assert.equal(a.body.created, true);
    const b = await api(srv, 'POST', '/api/_queues/hello/enqueue',
      { body: { data: { x: 2 }, opts: { jobId: 'dedup-1' } } });
    assert.equal(b.status, 200);
    assert.equal(b.body.created, false);
    const job = await until(async () => {
      const j = await api(srv, 'GET', '/api/_queues/hello/job/dedup-1');
      return j.body.state === 'completed' && j.body;
    });
    assert.deepEqual(job.data, { x: 1 });
    assert.deepEqual(job.returnvalue, { hello: { x: 1 } });
  });

  test('enqueue validates its body and options', async () => {
    assertError(await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { date: {} } }), 400, 'bad_request');
    assertError(await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { opts: { attempts: 0 } } }), 400, 'bad_request');
    assertError(await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { name: 5 } }), 400, 'bad_request');
    assertError(await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: [1] }), 400, 'bad_request');
  });

  test('pause and resume answer {name, isPaused}; enqueue into a paused queue is paused', async () => {
    const p = await api(srv, 'POST', '/api/_queues/hello/pause');
    assert.equal(p.status, 200);
    assert.deepEqual(p.body, { name: 'hello', isPaused: true });
    const e = await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { data: { p: 1 } } });
    assert.equal(e.body.state, 'paused');
    const r = await api(srv, 'POST', '/api/_queues/hello/resume');
    assert.deepEqual(r.body, { name: 'hello', isPaused: false });
    await until(async () => (await api(srv, 'GET', `/api/_queues/hello/job/${e.body.id}`)).body.state === 'completed');
  });

  test('jobs list filters by state with paging; bad states are refused', async () => {
    const r = await api(srv, 'GET', '/api/_queues/hello/job?state=completed,failed&limit=1');
    assert.equal(r.status, 200);
    assert.deepEqual(Object.keys(r.body).sort(), ['count', 'hasMore', 'jobs', 'total']);
    assert.equal(r.body.jobs.length, 1);
    assert.ok(['completed', 'failed'].includes(r.body.jobs[0].state));
    assertError(await api(srv, 'GET', '/api/_queues/hello/job?state=done'), 400, 'bad_request');
    assertError(await api(srv, 'GET', '/api/_queues/hello/job?limit=1001'), 400, 'bad_request');
  });

  test('retry a failed job, refuse to retry a completed one, remove a job', async () => {
    const e = await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { data: { fail: true } } });
    const id = e.body.id;
    const failed = await until(async () => {
      const j = await api(srv, 'GET', `/api/_queues/hello/job/${id}`);
      return j.body.state === 'failed' && j.body;
    });
    assert.equal(failed.failedReason, 'asked to fail');
    const rt = await api(srv, 'POST', `/api/_queues/hello/job/${id}/retry`);
    assert.equal(rt.status, 200, JSON.stringify(rt.body));
    assert.equal(rt.body.id, id);
    await until(async () => (await api(srv, 'GET', `/api/_queues/hello/job/${id}`)).body.state === 'failed');
    const ok = await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: { data: {} } });
    await until(async () => (await api(srv, 'GET', `/api/_queues/hello/job/${ok.body.id}`)).body.state === 'completed');
    assertError(await api(srv, 'POST', `/api/_queues/hello/job/${ok.body.id}/retry`), 409, 'job_not_failed');
    const rm = await api(srv, 'DELETE', `/api/_queues/hello/job/${id}`);
    assert.equal(rm.status, 200);
    assert.deepEqual(rm.body, { success: true, id });
    assertError(await api(srv, 'GET', `/api/_queues/hello/job/${id}`), 404, 'job_not_found');
  });
});

describe('health and metrics', () => {
  test('health answers 200 with the API-37 body', async () => {
    const r = await api(srv, 'GET', '/api/_health');
    assert.equal(r.status, 200);
    assertJsonHeaders(r);
    assert.equal(r.body.status, 'ok');
    assert.equal(r.body.adapters.queue.type, 'file');
    assert.equal(r.body.functions, 4);
    assert.equal(r.body.flows, 2);
  });

  test('metrics answer Prometheus text', async () => {
    const r = await api(srv, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    assert.match(r.body, /# TYPE nvent_build_info gauge/);
    assert.match(r.body, /nvent_queue_jobs\{queue="hello",state="completed"\} \d+/);
  });
});

describe('errors (API-2, API-3)', () => {
  test('malformed JSON is invalid_json', async () => {
    assertError(await api(srv, 'POST', '/api/_queues/hello/enqueue', { body: '{"data":', raw: true }), 400, 'invalid_json');
    assertError(await api(srv, 'POST', '/api/_flows/demo/start', { body: '[1,', raw: true }), 400, 'invalid_json');
  });

  test('unknown entities are 404 with their own codes', async () => {
    assertError(await api(srv, 'POST', '/api/_flows/nope/start', { body: {} }), 404, 'flow_not_found');
    assertError(await api(srv, 'GET', '/api/_flows/demo/runs/01890000-0000-7000-8000-000000000000'), 404, 'run_not_found');
    assertError(await api(srv, 'GET', '/api/_queues/nope'), 404, 'queue_not_found');
    assertError(await api(srv, 'POST', '/api/_queues/nope/enqueue', { body: {} }), 404, 'queue_not_found');
    assertError(await api(srv, 'GET', '/api/_queues/hello/job/no-such-job'), 404, 'job_not_found');
  });

  test('no route is 404 not_found; a wrong method is 405 with Allow', async () => {
    assertError(await api(srv, 'GET', '/api/_nothing'), 404, 'not_found');
    assertError(await api(srv, 'GET', '/api/_flows/demo'), 404, 'not_found');
    const r = await api(srv, 'DELETE', '/api/_flows/demo/start');
    assertError(r, 405, 'method_not_allowed');
    assert.equal(r.headers.get('allow'), 'POST');
    const j = await api(srv, 'PUT', '/api/_queues/hello/job/x');
    assertError(j, 405, 'method_not_allowed');
    assert.equal(j.headers.get('allow'), 'GET, DELETE');
  });

  test('path parameters are decoded after splitting; an invalid name is 400; a trailing / is ignored', async () => {
    assertError(await api(srv, 'GET', '/api/_queues/hel%2Flo'), 400, 'bad_request');
    assertError(await api(srv, 'GET', '/api/_queues/bad%20name'), 400, 'bad_request');
    const enc = await api(srv, 'GET', '/api/_queues/%68ello');
    assert.equal(enc.status, 200);
    assert.equal(enc.body.name, 'hello');
    assert.equal((await api(srv, 'GET', '/api/_queues/')).status, 200);
  });

  test('a body over maxBodyBytes with Content-Length is refused with 413 before it is read', async () => {
    // Send the headers only: the answer must come without the body.
    const answer = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1', () => {
        s.write('POST /api/_queues/hello/enqueue HTTP/1.1\r\nHost: x\r\n' +
                'Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n');
      });
      let data = '';
      s.on('data', (d) => { data += d; if (data.includes('}')) { s.destroy(); resolve(data); } });
      s.on('error', reject);
      setTimeout(() => { s.destroy(); resolve(data); }, 3000);
    });
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /"error":"payload_too_large"/);
  });

  test('a chunked body over maxBodyBytes is refused with 413', async () => {
    const answer = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1', () => {
        s.write('POST /api/_queues/hello/enqueue HTTP/1.1\r\nHost: x\r\n' +
                'Transfer-Encoding: chunked\r\n\r\n');
        const chunk = 'a'.repeat(3000);
        s.write(`${(3000).toString(16)}\r\n${chunk}\r\n`);
        s.write(`${(3000).toString(16)}\r\n${chunk}\r\n`);
      });
      let data = '';
      s.on('data', (d) => { data += d; });
      s.on('close', () => resolve(data));
      s.on('error', () => resolve(data));
      setTimeout(() => { s.destroy(); resolve(data); }, 3000);
    });
    assert.match(answer, /413/);
    assert.match(answer, /"error":"payload_too_large"/);
  });

  test('a chunked body within the limit is accepted', async () => {
    const answer = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1', () => {
        const body = '{"data":{"chunked":true},"opts":{"jobId":"chunked-1"}}';
        s.write('POST /api/_queues/hello/enqueue HTTP/1.1\r\nHost: x\r\nConnection: close\r\n' +
                'Transfer-Encoding: chunked\r\n\r\n');
        s.write(`${(10).toString(16)}\r\n${body.slice(0, 10)}\r\n`);
        s.write(`${(body.length - 10).toString(16)}\r\n${body.slice(10)}\r\n0\r\n\r\n`);
      });
      let data = '';
      s.on('data', (d) => { data += d; });
      s.on('close', () => resolve(data));
      s.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 201 /);
    assert.match(answer, /"id":"chunked-1"/);
  });

  test('keep-alive: error and success answers do not close the connection', async () => {
    const answers = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1', () => {
        s.write('GET /api/_nothing HTTP/1.1\r\nHost: x\r\n\r\n');
        s.write('POST /api/_queues/hello/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}');
      });
      let data = '';
      s.on('data', (d) => {
        data += d;
        if ((data.match(/HTTP\/1\.1 /g) || []).length === 2 && data.trim().endsWith('}')) { s.destroy(); resolve(data); }
      });
      s.on('error', reject);
      setTimeout(() => { s.destroy(); resolve(data); }, 3000);
    });
    assert.match(answers, /HTTP\/1\.1 404/);
    assert.match(answers, /HTTP\/1\.1 201/);
    assert.doesNotMatch(answers, /Connection: close/i);
  });
});
