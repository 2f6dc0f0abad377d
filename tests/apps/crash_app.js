// A plain Node.js HTTP app (no npm dependencies) that lifeguard's killed-app
// tests stand in front of. It behaves like a real Express-style app: it dies
// on an uncaught exception thrown in an async callback (exit code 1).
//
// Usage: node crash_app.js [port]   (port 0 or absent: an ephemeral port)
// The first stdout line is `listening <port>` (on 127.0.0.1). Then one line
// per request, written when the request head arrives:
//   REQ <METHOD> <PATH>
// so a test can count deliveries even after the process is dead (writes to a
// pipe are synchronous on Linux: the line is out before any later crash).
//
// Routes:
//   GET  /             200 "ok"
//   GET  /slow?ms=N    200 "slow <N>" after N ms (default 1000)
//   ANY  /crash?ms=N   throws inside a setTimeout callback after N ms (default 0)
//   POST /work?ms=N    counts the POST, answers "worked <count>" after N ms (default 0)
//   GET  /count        the number of POST /work received so far

'use strict';

const http = require('http');

const port = Number(process.argv[2] || process.env.PORT || 0);
let works = 0;

function param(url, name, dflt) {
  const v = url.searchParams.get(name);
  const n = v === null ? NaN : Number(v);
  return Number.isFinite(n) ? n : dflt;
}

function send(res, status, text) {
  res.writeHead(status, {
    'content-type': 'text/plain',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://app.local');
  process.stdout.write(`REQ ${req.method} ${url.pathname}\n`);
  // Read the whole body before answering, as body parsers do.
  req.on('data', () => {});
  req.on('end', () => {
    if (url.pathname === '/') {
      send(res, 200, 'ok');
    } else if (url.pathname === '/slow') {
      const ms = param(url, 'ms', 1000);
      setTimeout(() => send(res, 200, `slow ${ms}`), ms);
    } else if (url.pathname === '/crash') {
      const ms = param(url, 'ms', 0);
      setTimeout(() => {
        // An uncaught exception in an async callback: the process exits with 1.
        throw new Error('boom: crash requested by ' + req.method + ' ' + req.url);
      }, ms);
    } else if (url.pathname === '/work' && req.method === 'POST') {
      works += 1;
      const n = works;
      const ms = param(url, 'ms', 0);
      setTimeout(() => send(res, 200, `worked ${n}`), ms);
    } else if (url.pathname === '/count') {
      send(res, 200, String(works));
    } else {
      send(res, 404, 'not found');
    }
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
