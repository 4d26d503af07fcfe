// The command line end to end (§17): exit codes (CLI-2), error lines
// (CLI-3), --json bodies equal to the API's (CLI-5), events --follow
// (CLI-7), direct mode on file adapters (CLI-4), configuration errors
// (CFG-3) and a clean stop on SIGTERM (CLI-8).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FILE_ADAPTERS, api, cli, makeProject, startServer, waitRun } from './lib/nvent.mjs';
import { killAll } from './lib/nvent.mjs';

let srv;
let dir;

before(async () => {
  dir = makeProject({ ...FILE_ADAPTERS, shutdownGraceMs: 1000 });
  srv = await startServer(dir);
});

after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  killAll();
  assert.equal(code, 0, srv.log);
});

const run = (args, opts = {}) => cli([...args, '--url', srv.url], { cwd: dir, ...opts });

describe('usage', () => {
  test('version prints nvent <version>', async () => {
    const r = await cli(['version']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^nvent \d+\.\d+\.\d+\n$/);
  });

  test('usage errors exit 2 with a message on stderr', async () => {
    for (const args of [['bogus'], ['runs'], ['runs', 'demo', '--limit', 'x'], ['queues', '--nope'],
      ['cancel', 'demo'], ['start', 'demo', '{bad json'], ['version', 'extra'],
      ['schedule', 'add', 'demo', '--cron', '* * * * *', '--delay', '5'], ['schedule']]) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^nvent: /, args.join(' '));
      assert.equal(r.stdout, '');
    }
  });

  test('--help describes each command and exits 0', async () => {
    for (const c of [['serve'], ['start'], ['schedule', 'add'], ['events']]) {
      const r = await cli([...c, '--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^usage: nvent ${c.join(' ')}`));
    }
  });
});

describe('client commands', () => {
  test('start prints the run id; --json prints the API body', async () => {
    const r = await run(['start', 'demo', '{"cli":1}']);
    assert.equal(r.code, 0, r.stderr);
    const runId = r.stdout.trim();
    assert.match(runId, /^[0-9a-f-]{36}$/);
    const j = await run(['start', 'demo', '-', '--json'], { input: '{"stdin":true}' });
    assert.equal(j.code, 0, j.stderr);
    const body = JSON.parse(j.stdout);
    assert.equal(body.flowId, body.runId);
    const done = await waitRun(srv, 'demo', body.runId);
    assert.deepEqual(done.events[0].data.input, { stdin: true });
  });

  test('an API error prints the message and the code and exits 1', async () => {
    const r = await run(['start', 'nope']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^nvent: .+ \[flow_not_found\]\n$/);
    const q = await run(['enqueue', 'nope', '{}']);
    assert.equal(q.code, 1);
    assert.match(q.stderr, /\[queue_not_found\]/);
  });

  test('--json output equals the API body for queues, flows, runs and events', async () => {
    const { runId } = (await api(srv, 'POST', '/api/_flows/demo/start', { body: {} })).body;
    await waitRun(srv, 'demo', runId);
    const pairs = [
      [['queues'], '/api/_queues'],
      [['flows'], '/api/_flows'],
      [['runs', 'demo', '--limit', '5'], '/api/_flows/demo/runs?limit=5&offset=0'],
      [['events', runId], `/api/_runs/${runId}?limit=10000`],
      [['schedule', 'list'], '/api/_schedules'],
    ];
    for (const [args, p] of pairs) {
      const r = await run([...args, '--json']);
      assert.equal(r.code, 0, `${args}: ${r.stderr}`);
      const expected = (await api(srv, 'GET', p)).body;
      const got = JSON.parse(r.stdout);
      if (args[0] === 'queues') {
        // Counts move as jobs finish; compare the shape and the names.
        assert.deepEqual(got.map((q) => q.name), expected.map((q) => q.name));
      } else {
        assert.deepEqual(got, expected, args.join(' '));
      }
    }
  });

  test('human output: runs as aligned columns, queues one per line', async () => {
    const r = await run(['runs', 'demo']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.split('\n')[0], /^RUN\s+STATUS\s+STARTED\s+COMPLETED\s+STEPS$/);
    const q = await run(['queues']);
    assert.deepEqual(q.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0]),
      ['first', 'hello', 'second', 'sleeper']);
  });

  test('enqueue prints the job id; --name and --opts are passed on', async () => {
    const r = await run(['enqueue', 'hello', '{"e":1}', '--name', 'greet', '--opts', '{"jobId":"cli-job-1"}']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'cli-job-1\n');
    const job = await api(srv, 'GET', '/api/_queues/hello/job/cli-job-1');
    assert.equal(job.body.name, 'greet');
    assert.deepEqual(job.body.data, { e: 1 });
  });

  test('events --follow prints events as they come and exits 0 after the terminal one', async () => {
    const { runId } = (await api(srv, 'POST', '/api/_flows/demo/start', { body: {} })).body;
    const r = await run(['events', runId, '--follow', '--json'], { timeoutMs: 45000 });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const done = await waitRun(srv, 'demo', runId);
    assert.deepEqual(lines, done.events);
    const again = await run(['events', runId, '--follow']);
    assert.equal(again.code, 0);
    assert.match(again.stdout.trim().split('\n').at(-1), /flow\.completed/);
  });

  test('events --follow survives a server restart and resumes without gaps or duplicates', async () => {
    const d = makeProject({ ...FILE_ADAPTERS, shutdownGraceMs: 300 });
    let s = await startServer(d);
    const port = s.port;
    // The entry queue is paused (a flag the file adapter keeps), so no
    // handler is running when the server stops: this test is about the
    // stream, not about jobs caught by a shutdown.
    await api(s, 'POST', '/api/_queues/sleeper/pause');
    const { runId } = (await api(s, 'POST', '/api/_flows/slow/start', { body: {} })).body;
    // The server stops once the CLI has printed the run's first event: it
    // is then connected (a CLI that could not connect at all would exit 1
    // with "no nvent server", which is another case).
    let printed;
    const first = new Promise((r) => { printed = r; });
    const follow = cli(['events', runId, '--follow', '--json', '--url', s.url],
      { cwd: d, timeoutMs: 30000, onStdout: (out) => { if (out.includes('\n')) printed(); } });
    await Promise.race([first, follow]);
    await s.stop();
    s = await startServer(d, { port });
    await api(s, 'POST', `/api/_flows/slow/runs/${runId}/cancel`);
    const r = await follow;
    assert.equal(r.code, 0, r.stderr);
    const ids = r.stdout.trim().split('\n').map((l) => JSON.parse(l).id);
    const run = (await api(s, 'GET', `/api/_runs/${runId}`)).body;
    const upTo = run.events.findIndex((e) => e.type === 'flow.cancel') + 1;
    assert.ok(upTo > 0, JSON.stringify(run.events.map((e) => e.type)));
    assert.deepEqual(ids, run.events.slice(0, upTo).map((e) => e.id));
    assert.match(r.stderr, /reconnecting/);
    await s.stop();
  });

  test('cancel cancels a running run; canceling again exits 1 with run_not_running', async () => {
    const { runId } = (await api(srv, 'POST', '/api/_flows/slow/start', { body: {} })).body;
    const r = await run(['cancel', 'slow', runId]);
    assert.equal(r.code, 0, r.stderr);
    await waitRun(srv, 'slow', runId, 'canceled');
    const again = await run(['cancel', 'slow', runId]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /\[run_not_running\]/);
  });

  test('schedule add, list and rm', async () => {
    const add = await run(['schedule', 'add', 'demo', '--cron', '0 3 * * *', '--tz', 'Europe/Paris',
      '--input', '{"nightly":true}', '--misfire', 'skip']);
    assert.equal(add.code, 0, add.stderr);
    const id = add.stdout.trim();
    const list = await run(['schedule', 'list', 'demo', '--json']);
    const mine = JSON.parse(list.stdout).find((x) => x.id === id);
    assert.equal(mine.misfire, 'skip');
    assert.deepEqual(mine.schedule, { cron: '0 3 * * *', tz: 'Europe/Paris' });
    const human = await run(['schedule', 'list']);
    assert.match(human.stdout, new RegExp(`${id}\\s+demo\\s+0 3 \\* \\* \\* \\(Europe/Paris\\)`));
    const bad = await run(['schedule', 'add', 'demo', '--cron', 'nope']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /\[invalid_cron\]/);
    const rm = await run(['schedule', 'rm', 'demo', id]);
    assert.equal(rm.code, 0, rm.stderr);
    const again = await run(['schedule', 'rm', 'demo', id]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /\[schedule_not_found\]/);
  });

  test('rebuild-index answers the API body', async () => {
    const r = await run(['rebuild-index', '--flow', 'demo', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const b = JSON.parse(r.stdout);
    assert.ok('flows' in b && 'runs' in b);
  });
});

describe('without a server', () => {
  test('memory adapters: a client command exits 1 with no nvent server at <url>', async () => {
    const d = makeProject({ server: { port: 1 } }, { functions: false });
    const r = await cli(['queues'], { cwd: d });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'nvent: no nvent server at http://127.0.0.1:1\n');
  });

  test('file adapters: direct mode gives the same answer as the server did', async () => {
    const d = makeProject({ ...FILE_ADAPTERS, shutdownGraceMs: 500 });
    const s = await startServer(d);
    const e = await api(s, 'POST', '/api/_queues/hello/enqueue', { body: { data: { direct: 1 }, opts: { jobId: 'd-1' } } });
    assert.equal(e.status, 201);
    const { runId } = (await api(s, 'POST', '/api/_flows/demo/start', { body: {} })).body;
    const finished = await waitRun(s, 'demo', runId);
    const before = (await api(s, 'GET', `/api/_runs/${runId}?limit=10000`)).body;
    await s.stop();
    const url = `http://127.0.0.1:${s.port}`;
    const ev = await cli(['events', runId, '--json', '--url', url], { cwd: d });
    assert.equal(ev.code, 0, ev.stderr);
    assert.deepEqual(JSON.parse(ev.stdout), before);
    assert.equal(finished.status, 'completed');
    const q = await cli(['queues', '--json', '--url', url], { cwd: d });
    assert.equal(q.code, 0, q.stderr);
    assert.ok(JSON.parse(q.stdout).some((x) => x.name === 'hello'));
    const follow = await cli(['events', runId, '--follow', '--url', url], { cwd: d });
    assert.equal(follow.code, 1);
    assert.match(follow.stderr, /no nvent server/);
  });

  test('flows without a server analyzes the functions folder', async () => {
    const d = makeProject({ server: { port: 1 } });
    const r = await cli(['flows', '--json'], { cwd: d });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).map((f) => f.id), ['demo', 'slow']);
  });
});

describe('configuration and lifecycle', () => {
  test('an unknown configuration key exits 1 naming the key path', async () => {
    const d = makeProject({ queue: { worker: { concurency: 2 } } }, { functions: false });
    const r = await cli(['queues'], { cwd: d });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /nvent\.json: queue\.worker\.concurency: unknown key/);
  });

  test('an invalid environment value exits 1 naming the variable', async () => {
    const d = makeProject({}, { functions: false });
    const r = await cli(['serve'], { cwd: d, env: { NVENT_PORT: 'x' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NVENT_PORT/);
  });

  test('--config names the file; a missing one exits 1', async () => {
    const d = makeProject({ server: { port: 1 } }, { functions: false });
    fs.renameSync(path.join(d, 'nvent.json'), path.join(d, 'other.json'));
    const r = await cli(['queues', '--config', path.join(d, 'other.json')]);
    assert.equal(r.stderr, 'nvent: no nvent server at http://127.0.0.1:1\n');
    const m = await cli(['queues', '--config', path.join(d, 'missing.json')]);
    assert.equal(m.code, 1);
    assert.match(m.stderr, /missing\.json/);
  });

  test('startup problems are all printed with their file, then serve exits 1', async () => {
    const d = makeProject({}, { functions: false });
    fs.mkdirSync(path.join(d, 'functions'));
    fs.writeFileSync(path.join(d, 'functions', 'broken.c'), 'int nvent_handler(void) { return }\n');
    fs.writeFileSync(path.join(d, 'functions', 'garbage'), 'not a program\n', { mode: 0o755 });
    const r = await cli(['serve', '--port', '0'], { cwd: d, timeoutMs: 60000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /functions\/broken\.c: /);
    assert.match(r.stderr, /functions\/garbage: /);
    assert.doesNotMatch(r.stderr, /listening/);
  });

  test('serve stops cleanly on SIGTERM and SIGINT with exit 0', async () => {
    for (const sig of ['SIGTERM', 'SIGINT']) {
      const d = makeProject({ shutdownGraceMs: 500 }, { functions: false });
      const s = await startServer(d);
      s.proc.kill(sig);
      const { code } = await s.exited;
      assert.equal(code, 0, s.log);
      assert.match(s.log, /stopped/);
    }
  });
});
