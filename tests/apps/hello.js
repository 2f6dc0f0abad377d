// The README's Quick start app: plain Node.js, no health route (GET /health
// answers 404, as most apps do), every other request answered with a line.
//
//   node tests/apps/hello.js [PORT]     (default 3000; 0: any free port)
//
// Prints "listening PORT" once it listens.
'use strict';
const http = require('http');

const port = Number(process.argv[2] ?? 3000);
const server = http.createServer((req, res) => {
  if (req.url === '/health') {
    res.statusCode = 404;
    res.end('not found\n');
    return;
  }
  res.end(`hello from the app: ${req.method} ${req.url}\n`);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
