// SSE fan-out benchmark: open N clients on the global stream (job messages
// of queue "bench"), enqueue M jobs, and check that every client receives
// the message of every job. Prints one line; exits 1 if any was missing.
// Usage: node bench/sse_clients.mjs <url> <clients> <jobs>
import http from 'node:http';

const [url, nArg, mArg] = process.argv.slice(2);
const N = Number(nArg || 100), M = Number(mArg || 50);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const got = [];
let opened = 0, failed = 0;

function open(i) {
  return new Promise((resolve) => {
    const req = http.get(`${url}/api/_stream?kinds=job&queue=bench`, { agent }, (res) => {
      if (res.statusCode !== 200) { failed++; res.resume(); resolve(); return; }
      opened++;
      const seen = new Set();
      got[i] = seen;
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let k;
        while ((k = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, k);
          buf = buf.slice(k + 2);
          const line = block.split('\n').find((l) => l.startsWith('data: '));
          if (line) seen.add(JSON.parse(line.slice(6)).jobId);
        }
      });
      resolve();
    });
    req.on('error', () => { failed++; resolve(); });
  });
}

const t0 = Date.now();
for (let i = 0; i < N; i += 100)
  await Promise.all(Array.from({ length: Math.min(100, N - i) }, (_, j) => open(i + j)));
const tOpen = Date.now() - t0;
const ids = [];
const t1 = Date.now();
for (let j = 0; j < M; j++) {
  const r = await fetch(`${url}/api/_queues/bench/enqueue`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"data":{}}' });
  ids.push((await r.json()).id);
}
const deadline = Date.now() + 30000;
let complete = 0;
while (Date.now() < deadline) {
  complete = got.filter((s) => s && ids.every((id) => s.has(id))).length;
  if (complete === opened) break;
  await new Promise((r) => setTimeout(r, 50));
}
const tAll = Date.now() - t1;
console.log(`clients=${N} opened=${opened} refused=${failed} jobs=${M} ` +
  `complete=${complete}/${opened} open_ms=${tOpen} deliver_ms=${tAll}`);
process.exit(complete === opened && failed === 0 ? 0 : 1);
