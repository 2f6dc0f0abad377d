// A stand-in for the app container of the pod lifecycle test
// (tests/k8s.rs): a plain Node HTTP server with no SIGTERM handler, so, like
// a default Node app, it dies at once on SIGTERM, cutting whatever it was
// doing. Requests to anything but /health take `?ms=N` milliseconds after
// their body has arrived; the answer is JSON.
//
//   PORT=0 node tests/k8s/app.js     # prints {"port": N} once listening
'use strict';
const http = require('node:http');

const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.end('ok\n');
    return;
  }
  const ms = Number(new URL(req.url, 'http://app').searchParams.get('ms') || 0);
  let bytes = 0;
  req.on('data', (chunk) => { bytes += chunk.length; });
  req.on('end', () => {
    setTimeout(() => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ method: req.method, bytes, pid: process.pid }));
    }, ms);
  });
});

server.listen(Number(process.env.PORT || 3000), '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
