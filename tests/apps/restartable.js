// A tiny app the retry tests kill (SIGKILL) and restart on the same port.
//
//   node restartable.js PORT DELIVERY_LOG [stall]
//
// Every request except GET /health is appended to DELIVERY_LOG
// ("METHOD PATH\n", synchronously, so the record survives a SIGKILL) once its
// body has been read; the file is shared by every incarnation of the app, so
// the test can count exactly how many times each request reached the app.
// With "stall", requests whose path starts with /stall are never answered (the
// app "hangs" on them until it is killed). Prints "listening PORT" when ready.
'use strict';
const http = require('http');
const fs = require('fs');

const [port, log, mode] = process.argv.slice(2);

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.end('ok');
    return;
  }
  let len = 0;
  req.on('data', (c) => { len += c.length; });
  req.on('end', () => {
    fs.appendFileSync(log, `${req.method} ${req.url}\n`);
    if (mode === 'stall' && req.url.startsWith('/stall')) {
      return; // never answered
    }
    res.setHeader('content-type', 'text/plain');
    res.end(`${req.method} ${req.url} ${len}\n`);
  });
});

server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`listening ${port}\n`);
});
