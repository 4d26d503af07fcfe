// Security and server limits end to end (SEC-1..SEC-5, CL-12, CL-15):
// bearer token on every API path and stream, the static UI without it,
// refusing a public address without a token, the request timeout.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { api, cli, makeProject, readStream, startServer } from './lib/nvent.mjs';
import { killAll } from './lib/nvent.mjs';

const TOKEN = 'e2e-secret-token';
let srv;

before(async () => {
  const dir = makeProject({ shutdownGraceMs: 500, server: { token: TOKEN, requestTimeoutMs: 1000 } },
    { functions: false });
  srv = await startServer(dir);
});

after(async () => {
  if (!srv) return;
  const { code } = await srv.stop();
  killAll();
  assert.equal(code, 0, srv.log);
  assert.ok(!srv.log.includes(TOKEN), 'the token must never be logged');
});

const auth = { authorization: `Bearer ${TOKEN}` };

describe('bearer token', () => {
  for (const p of ['/api/_health', '/api/_flows', '/metrics', '/api/_nothing']) {
    test(`${p} without a token is 401 with WWW-Authenticate`, async () => {
      const r = await api(srv, 'GET', p);
      assert.equal(r.status, 401);
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
      assert.equal(r.body.error, 'unauthorized');
    });
  }

  test('a wrong token, another scheme or a prefix of the token is refused', async () => {
    for (const h of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, 'Bearer ']) {
      const r = await api(srv, 'GET', '/api/_health', { headers: { authorization: h } });
      assert.equal(r.status, 401, h);
    }
  });

  test('the right token opens every path, streams included', async () => {
    assert.equal((await api(srv, 'GET', '/api/_health', { headers: auth })).status, 200);
    assert.equal((await api(srv, 'GET', '/metrics', { headers: auth })).status, 200);
    const s = await readStream(`${srv.url}/api/_stream`, { headers: auth, stop: () => true });
    assert.equal(s.status, 200);
    const denied = await readStream(`${srv.url}/api/_stream`);
    assert.equal(denied.status, 401);
  });

  test('the UI page is served without a token, also for deep links', async () => {
    for (const p of ['/', '/flows/demo/runs/x']) {
      const r = await fetch(srv.url + p);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /^text\/html/);
    }
  });

  test('no CORS headers are sent', async () => {
    const r = await api(srv, 'GET', '/api/_health', { headers: { ...auth, origin: 'http://evil.example' } });
    for (const [k] of r.headers) assert.ok(!k.startsWith('access-control-'), k);
  });

  test('the CLI sends the configured token', async () => {
    const ok = await cli(['queues', '--json', '--url', srv.url], { env: { NVENT_TOKEN: TOKEN } });
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout), []);
    const bad = await cli(['queues', '--url', srv.url]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^nvent: .* \[unauthorized\]\n$/);
  });
});

describe('request timeout', () => {
  test('a body that does not arrive in time is answered 408 before the close', async () => {
    const started = Date.now();
    const answer = await new Promise((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1', () => {
        s.write(`POST /api/_flows/x/start HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
                'Content-Length: 50\r\n\r\n{"a":');
      });
      let data = '';
      s.on('data', (d) => { data += d; });
      s.on('close', () => resolve(data));
      s.on('error', reject);
      setTimeout(() => { s.destroy(); resolve(data); }, 25000);
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(answer, /"error":"request_timeout"/);
    assert.ok(Date.now() - started < 20000);
  });
});

describe('listening address', () => {
  test('a non-loopback host without a token is refused with exit 1', async () => {
    const dir = makeProject({ server: { host: '0.0.0.0', port: 0 } }, { functions: false });
    const r = await cli(['serve'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refusing to listen on 0\.0\.0\.0 without server\.token \(or NVENT_TOKEN\)/);
  });

  test('a port in use makes serve exit 1 naming the address', async () => {
    const dir = makeProject({ server: { port: srv.port } }, { functions: false });
    const r = await cli(['serve'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${srv.port}`));
  });
});
