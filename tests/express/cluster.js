// app.js under node:cluster, as many deployments run it: the primary forks
// WORKERS (default 2) workers that share one port, and forks a replacement
// when a worker dies.
//
// stdout: `listening <port>` once every worker listens, then the workers'
// own lines (see app.js), plus `worker <pid> exited <code>` and
// `worker <pid> forked` from the primary.
'use strict';

const cluster = require('node:cluster');

if (cluster.isPrimary) {
  const workers = Number(process.env.WORKERS || 2);
  let listening = 0;
  let announced = false;
  cluster.on('listening', (worker, address) => {
    listening += 1;
    if (!announced && listening >= workers) {
      announced = true;
      console.log(`listening ${address.port}`);
    }
  });
  cluster.on('exit', (worker, code) => {
    console.log(`worker ${worker.process.pid} exited ${code}`);
    const next = cluster.fork();
    console.log(`worker ${next.process.pid} forked`);
  });
  for (let i = 0; i < workers; i += 1) {
    cluster.fork();
  }
} else {
  // Every worker calls listen(PORT); with PORT=0 the primary hands all of
  // them the same port.
  require('./app').listen(() => {});
}
