// Functions from a folder, end to end against the built binary (§1, §10,
// §11, CLI-11, CLI-12): the example project's flow, process functions that
// crash, hang past their timeout or write garbage (exact errors, restarted
// children), stderr as warn logs, C functions that do not compile,
// `nvent build` and `nvent dev` reloads.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, FILE_ADAPTERS, api, cleanEnv, cli, startServer, until, waitRun } from './lib/nvent.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.resolve(here, '../../examples/project');

function tmpProject(config, files = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvent-host-e2e-'));
  fs.writeFileSync(path.join(dir, 'nvent.json'), JSON.stringify(config));
  for (const [rel, [text, mode]] of Object.entries(files)) writeFile(dir, rel, text, mode);
  return dir;
}

function writeFile(dir, rel, text, mode = 0o644) {
  const p = path.join(dir, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  fs.chmodSync(p, mode);
}

// A Python process function that plays data.do, then answers {pid}.
const PLAYER = `#!/usr/bin/python3
import sys, json, os, time, signal
CONFIG = json.loads(os.environ.get('PLAYER_CONFIG', '{}'))
def send(m):
    sys.stdout.write(json.dumps(m) + '\\n'); sys.stdout.flush()
for line in sys.stdin:
    m = json.loads(line)
    if m['type'] == 'describe':
        send({'type': 'config', 'config': CONFIG}); continue
    if m['type'] != 'job': continue
    for a in m['data'].get('do', []):
        k, v = next(iter(a.items()))
        if k == 'raw': sys.stdout.write(v); sys.stdout.flush()
        elif k == 'stderr': sys.stderr.write(v + '\\n'); sys.stderr.flush()
        elif k == 'sleep': time.sleep(v)
        elif k == 'signal': os.kill(os.getpid(), getattr(signal, v))
    send({'type': 'result', 'id': m['id'], 'result': {'pid': os.getpid()}})
`;

const cFunction = (value, extra = '') => `#include <nvent.h>
${extra}
const nv_function_config nvent_config = { .abi = NV_ABI_VERSION, .queue = { .name = "calc" } };
int nvent_handler(nv_ctx *c, const char *in, void *ud);
int nvent_handler(nv_ctx *c, const char *in, void *ud)
{ (void)in; (void)ud; return nv_ctx_result(c, "{\\"v\\":${value}}", NULL); }
`;

async function enqueue(srv, queue, data, opts) {
  const r = await api(srv, 'POST', `/api/_queues/${queue}/enqueue`, { body: { data, opts } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

async function finished(srv, queue, id, timeoutMs = 15000) {
  return until(async () => {
    const r = await api(srv, 'GET', `/api/_queues/${queue}/job/${id}`);
    return r.status === 200 && ['completed', 'failed'].includes(r.body.state) ? r.body : null;
  }, { timeoutMs });
}

async function runJob(srv, queue, data = {}, opts = undefined) {
  return finished(srv, queue, await enqueue(srv, queue, data, opts));
}

describe('the example project', () => {
  let srv;
  let dir;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvent-example-'));
    fs.cpSync(EXAMPLE, dir, { recursive: true });
    fs.rmSync(path.join(dir, '.nvent'), { recursive: true, force: true });
    fs.rmSync(path.join(dir, '.data'), { recursive: true, force: true });
    srv = await startServer(dir, { args: ['--strict'] });
  });
  after(async () => {
    const { code } = await srv.stop();
    assert.equal(code, 0, srv.log);
  });

  test('the orders flow runs its C, Python and shell steps to completion', async () => {
    const r = await api(srv, 'POST', '/api/_flows/orders/start',
      { body: { id: 'A-1001', items: [{ sku: 'tea', qty: 2, price: 60 }] } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.step, 'receive');
    const run = await waitRun(srv, 'orders', r.body.runId);
    assert.equal(run.status, 'completed', JSON.stringify(run));
    const done = run.events.filter((e) => e.type === 'step.completed').map((e) => e.stepName);
    assert.deepEqual(done, ['receive', 'price', 'ship', 'notify']);
    const priced = run.events.find((e) => e.type === 'emit' && e.data.name === 'order.priced');
    assert.deepEqual(priced.data.payload, { id: 'A-1001', total: 108 });
  });

  test('a bad order fails the entry at once, without retries', async () => {
    const r = await api(srv, 'POST', '/api/_flows/orders/start', { body: { id: 'A-1002', items: [] } });
    const run = await waitRun(srv, 'orders', r.body.runId);
    assert.equal(run.status, 'failed');
    const failed = run.events.find((e) => e.type === 'step.failed');
    assert.match(JSON.stringify(failed.data), /an order needs a string/);
  });
});

describe('process functions', () => {
  let srv;
  let dir;
  before(async () => {
    dir = tmpProject({ ...FILE_ADAPTERS, functions: { killGraceMs: 300 } },
      { 'functions/p.py': [PLAYER, 0o755] });
    srv = await startServer(dir, { env: { PLAYER_CONFIG: '{"worker":{"concurrency":1}}' } });
  });
  after(async () => {
    const { code } = await srv.stop();
    assert.equal(code, 0, srv.log);
  });

  test('a child that crashes mid-job fails it with the signal name and is restarted', async () => {
    const a = await runJob(srv, 'p');
    assert.equal(a.state, 'completed', a.failedReason);
    const b = await runJob(srv, 'p', { do: [{ signal: 'SIGSEGV' }] });
    assert.equal(b.state, 'failed');
    assert.equal(b.failedReason, 'process killed by signal SIGSEGV');
    const c = await runJob(srv, 'p');
    assert.equal(c.state, 'completed', c.failedReason);
    assert.notEqual(c.returnvalue.pid, a.returnvalue.pid);
  });

  test('a job past its timeout fails with the exact error and the child is replaced', async () => {
    const a = await runJob(srv, 'p');
    const t0 = Date.now();
    const b = await runJob(srv, 'p', { do: [{ sleep: 30 }] }, { timeout: 500 });
    assert.equal(b.failedReason, 'timed out after 500 ms');
    assert.ok(Date.now() - t0 < 5000);
    const c = await runJob(srv, 'p');
    assert.equal(c.state, 'completed', c.failedReason);
    assert.notEqual(c.returnvalue.pid, a.returnvalue.pid);
  });

  test('garbage on stdout is a protocol error and the child is replaced', async () => {
    const a = await runJob(srv, 'p');
    const b = await runJob(srv, 'p', { do: [{ raw: 'not json\n' }] });
    assert.match(b.failedReason, /^protocol error: invalid JSON: /);
    const c = await runJob(srv, 'p');
    assert.equal(c.state, 'completed', c.failedReason);
    assert.notEqual(c.returnvalue.pid, a.returnvalue.pid);
  });

  test('stderr lines become warn log entries of the job', async () => {
    const j = await runJob(srv, 'p', { do: [{ stderr: 'disk almost full' }] });
    assert.equal(j.state, 'completed');
    assert.ok(j.logs.some((l) => l.level === 'warn' && l.message === 'disk almost full'),
      JSON.stringify(j.logs));
  });
});

describe('shutdown (W-7)', () => {
  test('SIGTERM while a process job runs: cancel, then the child is ended and serve exits 0', async () => {
    const dir = tmpProject({ ...FILE_ADAPTERS, shutdownGraceMs: 800, functions: { killGraceMs: 300 } },
      { 'functions/p.py': [PLAYER, 0o755] });
    const srv = await startServer(dir);
    const id = await enqueue(srv, 'p', { do: [{ sleep: 0 }] });
    await finished(srv, 'p', id);
    const slow = await enqueue(srv, 'p', { do: [{ stderr: 'working' }, { sleep: 60 }] });
    await until(async () => {
      const r = await api(srv, 'GET', `/api/_queues/p/job/${slow}`);
      return r.body.state === 'active';
    });
    const t0 = Date.now();
    const { code } = await srv.stop();
    assert.equal(code, 0, srv.log);
    assert.ok(Date.now() - t0 < 6000, `took ${Date.now() - t0} ms`);
    // no child of the function survives the server
    const left = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
      try { return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(path.join(dir, 'functions')); } catch { return false; }
    });
    assert.deepEqual(left, []);
  });
});

describe('startup and builds', () => {
  test('a C function that does not compile stops serve with the compiler output', async () => {
    const dir = tmpProject({}, { 'functions/bad.c': ['int f(void) { return missing_name; }\n'] });
    const r = await cli(['serve', '--port', '0'], { cwd: dir, timeoutMs: 30000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^functions\/bad\.c: -: compilation failed \(compiler exited with code 1\)$/m);
    assert.match(r.stderr, /functions\/bad\.c:1:\d+: error: .*missing_name/);
  });

  test('a process function that does not answer describe stops serve with the exact error', async () => {
    const dir = tmpProject({ functions: { describeTimeoutMs: 300, killGraceMs: 100 } },
      { 'functions/mute.sh': ['#!/bin/sh\nsleep 30\n', 0o755] });
    const r = await cli(['serve', '--port', '0'], { cwd: dir, timeoutMs: 30000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^functions\/mute\.sh: -: no config answer to describe within 300 ms$/m);
  });

  test('nvent build reports each C file, reuses fresh objects and exits 1 on a failure', async () => {
    const dir = tmpProject({}, { 'functions/a.c': [cFunction(1)], 'functions/x/b.c': [cFunction(2)] });
    let r = await cli(['build'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /functions\/a\.c: built/);
    assert.match(r.stdout + r.stderr, /functions\/x\/b\.c: built/);
    assert.ok(fs.existsSync(path.join(dir, '.nvent/build/x/b.so')));
    r = await cli(['build'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /functions\/a\.c: up to date/);
    writeFile(dir, 'functions/a.c', 'int broken(void) { return nope; }\n');
    r = await cli(['build'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stdout + r.stderr, /functions\/a\.c: -: compilation failed/);
    assert.match(r.stdout + r.stderr, /functions\/x\/b\.c: up to date/);
  });
});

// `nvent dev` on a free port; resolves once it listens.
function startDev(dir) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['dev', '--port', '0'], { cwd: dir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const srv = {
      proc, url: '', get log() { return log; },
      exited: new Promise((r) => proc.on('exit', (code) => r({ code }))),
      async stop() { proc.kill('SIGTERM'); return this.exited; },
    };
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(log)); }, 20000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /nvent listening on (http:\/\/\S+):(\d+)/.exec(log);
      if (m && !srv.url) { clearTimeout(timer); srv.url = `${m[1]}:${m[2]}`; resolve(srv); }
    });
  });
}

describe('nvent dev', () => {
  test('a changed C function is rebuilt and used; a broken one leaves the old in force', async () => {
    const dir = tmpProject({}, { 'functions/calc.c': [cFunction(1)] });
    const srv = await startDev(dir);
    try {
      let j = await runJob(srv, 'calc');
      assert.deepEqual(j.returnvalue, { v: 1 });
      writeFile(dir, 'functions/calc.c', cFunction(2));
      await until(async () => /reloaded/.test(srv.log), { timeoutMs: 15000 });
      j = await runJob(srv, 'calc');
      assert.deepEqual(j.returnvalue, { v: 2 });
      writeFile(dir, 'functions/calc.c', 'int broken(void) { return nope; }\n');
      await until(async () => /compilation failed/.test(srv.log), { timeoutMs: 15000 });
      j = await runJob(srv, 'calc');
      assert.deepEqual(j.returnvalue, { v: 2 });
    } finally {
      const { code } = await srv.stop();
      assert.equal(code, 0, srv.log);
    }
  });

  for (const [label, config] of [['memory', {}], ['file', FILE_ADAPTERS]]) {
    test(`on ${label} adapters a reload keeps finished and queued jobs; queued ones run on the new code`, async () => {
      const dir = tmpProject(config, { 'functions/calc.c': [cFunction(1)] });
      const srv = await startDev(dir);
      try {
        const first = await runJob(srv, 'calc');
        assert.deepEqual(first.returnvalue, { v: 1 });
        assert.equal((await api(srv, 'POST', '/api/_queues/calc/pause')).status, 200);
        const queued = await enqueue(srv, 'calc', {});
        writeFile(dir, 'functions/calc.c', cFunction(3));
        await until(async () => /reloaded/.test(srv.log), { timeoutMs: 15000 });
        assert.equal((await api(srv, 'POST', '/api/_queues/calc/resume')).status, 200);
        const later = await finished(srv, 'calc', queued);
        assert.deepEqual(later.returnvalue, { v: 3 });
        const j = await runJob(srv, 'calc');
        assert.deepEqual(j.returnvalue, { v: 3 });
        const again = await api(srv, 'GET', `/api/_queues/calc/job/${first.id}`);
        assert.equal(again.status, 200);
        assert.deepEqual(again.body.returnvalue, { v: 1 });
      } finally {
        const { code } = await srv.stop();
        assert.equal(code, 0, srv.log);
      }
    });
  }
});
