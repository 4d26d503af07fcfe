// Helpers for the end-to-end tests: start the real nvent binary on a free
// loopback port (server.port 0, the port read from the listening line) in
// a temporary project, call its API, read its live streams, run the CLI.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.NVENT_BIN ||
  path.resolve(here, '../../../build/nvent');
export const FIXTURE_FUNCTIONS = path.resolve(here, '../fixtures/functions');

// The environment without NVENT_* variables of the caller, plus 'extra'.
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('NVENT_') || k === 'NVENT_BIN') env[k] = v;
  return { ...env, ...extra };
}

// A temporary project folder with nvent.json and (optionally) functions/.
export function makeProject(config = {}, { functions = true } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvent-e2e-'));
  // A loaded CI machine may start the fixture scripts slowly.
  const cfg = { ...config, functions: { describeTimeoutMs: 30000, ...(config.functions || {}) } };
  fs.writeFileSync(path.join(dir, 'nvent.json'), JSON.stringify(cfg));
  if (functions)
    fs.cpSync(FIXTURE_FUNCTIONS, path.join(dir, 'functions'), { recursive: true });
  return dir;
}

export const FILE_ADAPTERS = {
  queue: { adapter: 'file' }, store: { adapter: 'file' }, stream: { adapter: 'file' },
};

// Every server still running when the test file ends is killed, so that a
// failed assertion never leaves a process behind (or the runner waiting).
const running = new Set();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });
export function killAll() {
  for (const p of running) p.kill('SIGKILL');
}

// Start `nvent serve` in 'dir'. Resolves once it logs its listening line.
export function startServer(dir, { args = [], env = {}, timeoutMs = 60000, port = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, ['serve', '--port', String(port), ...args], {
      cwd: dir,
      env: cleanEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(proc);
    proc.on('exit', () => running.delete(proc));
    let log = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not start:\n${log}`));
    }, timeoutMs);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /nvent listening on (http:\/\/\S+):(\d+)/.exec(log);
      if (m && !srv.port) {
        clearTimeout(timer);
        srv.port = Number(m[2]);
        srv.url = `${m[1]}:${m[2]}`;
        resolve(srv);
      }
    });
    proc.stdout.on('data', (d) => { log += d; });
    const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
    const srv = {
      proc, dir, port: 0, url: '', exited,
      get log() { return log; },
      async stop() {
        if (proc.exitCode === null && proc.signalCode === null)
          proc.kill('SIGTERM');
        return exited;
      },
    };
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (!srv.port) reject(new Error(`server exited with ${code}:\n${log}`));
    });
  });
}

// fetch + JSON: resolves {status, headers, body (parsed or text)}.
export async function api(srv, method, p, { body, headers = {}, raw } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = raw ? body : JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(srv.url + p, init);
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, body: parsed };
}

// Poll fn() until it returns a truthy value.
export async function until(fn, { timeoutMs = 30000, stepMs = 50 } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export async function waitRun(srv, flow, runId, status = null, headers = {}) {
  return until(async () => {
    const r = await api(srv, 'GET', `/api/_flows/${flow}/runs/${runId}`, { headers });
    if (r.status !== 200) return null;
    if (status ? r.body.status === status : r.body.status !== 'running') return r.body;
    return null;
  });
}

// Read a live stream: parses messages until stop(messages) is true or the
// time is up; returns {status, headers, messages, raw}. Each message:
// {id, event, data (parsed), comment}. onOpen (optional) is called once the
// response has begun (its status known): the server subscribes before it
// answers (src/http/sse.c), so from then on the reader misses nothing of
// this server. It is called on a failed request too.
export async function readStream(url, { headers = {}, stop = () => false, timeoutMs = 15000, onOpen = () => {} } = {}) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  const out = { status: 0, headers: null, messages: [], raw: '' };
  try {
    let res;
    try {
      res = await fetch(url, { headers, signal: ctl.signal });
    } finally {
      onOpen();
    }
    out.status = res.status;
    out.headers = res.headers;
    if (res.status !== 200) {
      out.body = await res.json();
      return out;
    }
    const dec = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body) {
      const text = dec.decode(chunk, { stream: true });
      out.raw += text;
      buf += text;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const msg = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) msg.comment = line.slice(1).trim();
          else if (line.startsWith('id: ')) msg.id = line.slice(4);
          else if (line.startsWith('event: ')) msg.event = line.slice(7);
          else if (line.startsWith('retry: ')) msg.retry = Number(line.slice(7));
          else if (line.startsWith('data: ')) msg.data = JSON.parse(line.slice(6));
        }
        out.messages.push(msg);
        if (stop(out.messages)) { ctl.abort(); return out; }
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
  } finally {
    clearTimeout(timer);
  }
  return out;
}

// readStream that also tells when it is open: {open, result}. `await
// open` before causing what the reader must see, instead of a fixed wait.
export function openStream(url, opts = {}) {
  let opened;
  const open = new Promise((r) => { opened = r; });
  const result = readStream(url, { ...opts, onOpen: opened });
  return { open, result };
}

// Run the CLI: resolves {code, stdout, stderr}. onStdout (optional) is
// called with all of stdout so far each time more of it comes.
export function cli(args, { cwd, env = {}, input, timeoutMs = 60000, onStdout } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, args, {
      cwd,
      env: cleanEnv(env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '', stderr = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`cli timed out: ${args.join(' ')}\n${stderr}`)); }, timeoutMs);
    proc.stdout.on('data', (d) => { stdout += d; if (onStdout) onStdout(stdout); });
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    if (input !== undefined) proc.stdin.end(input);
    else proc.stdin.end();
  });
}
