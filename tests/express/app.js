// A real Express 4 app for lifeguard's end-to-end tests (tests/express_e2e.rs).
//
// It crashes the classic way on cue: an exception thrown inside an async
// callback (setTimeout) is not caught by Express, so Node prints the stack
// trace and exits with code 1, closing every socket without a response.
//
// Environment:
//   PORT      port to listen on (0: any; the actual port is printed)
//   HOST      address to listen on (default 127.0.0.1)
//   APP_NAME  a name reported in responses (default "app")
//
// stdout protocol, one event per line (the test reads it):
//   listening <port>                    first line, once the server listens
//   request <METHOD> <url> <request-id> every request, on arrival
//   delivered <order-id> <count>        every order recorded (POST /orders*)
'use strict';

const express = require('express');

const name = process.env.APP_NAME || 'app';
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 0);

// Orders delivered to this process: id -> count.
const deliveries = new Map();

function deliver(id) {
  const n = (deliveries.get(id) || 0) + 1;
  deliveries.set(id, n);
  console.log(`delivered ${id} ${n}`);
  return n;
}

// Schedules the uncaught exception that kills the process: Express only
// catches what is thrown synchronously in a handler (or passed to next()).
function crashSoon() {
  setTimeout(() => {
    throw new Error(`boom (${name}, pid ${process.pid})`);
  }, 20);
}

// `?only=<name>` restricts a crash route to the process of that name; the
// others handle the request as the non-crashing route would.
function crashesHere(req) {
  return req.query.only === undefined || req.query.only === name;
}

function createApp() {
  const app = express();
  app.use((req, res, next) => {
    console.log(`request ${req.method} ${req.originalUrl} ${req.get('x-request-id') || '-'}`);
    next();
  });
  app.use(express.json());

  app.get('/', (req, res) => {
    res.json({ ok: true, app: name, pid: process.pid });
  });

  app.get('/health', (req, res) => {
    res.json({ status: 'ok', app: name });
  });

  // What the app saw of the request: lets the test check forwarding headers.
  app.get('/echo', (req, res) => {
    res.json({
      app: name,
      method: req.method,
      url: req.originalUrl,
      httpVersion: req.httpVersion,
      headers: req.headers,
    });
  });

  app.get('/slow', (req, res) => {
    const ms = Number(req.query.ms || 1000);
    setTimeout(() => res.json({ slept: ms, app: name }), ms);
  });

  app.post('/orders', (req, res) => {
    const id = req.body && req.body.id;
    if (typeof id !== 'string' || id === '') {
      res.status(400).json({ error: 'an order needs a string "id"' });
      return;
    }
    const n = deliver(id);
    res.status(201).json({ id, deliveries: n, app: name });
  });

  // Records the order, then dies before answering: the client cannot know
  // whether the order went through. Resending it would deliver it twice.
  app.post('/orders/crash', (req, res) => {
    const id = req.body && req.body.id;
    const n = deliver(typeof id === 'string' && id !== '' ? id : '-');
    if (!crashesHere(req)) {
      res.status(201).json({ id, deliveries: n, app: name });
      return;
    }
    crashSoon();
  });

  app.get('/crash', (req, res) => {
    if (!crashesHere(req)) {
      res.json({ ok: true, app: name, crashed: false });
      return;
    }
    crashSoon();
  });

  return app;
}

function listen(onListening) {
  const server = createApp().listen(port, host, () => onListening(server.address().port));
  server.on('error', (err) => {
    console.error(`listen failed: ${err.message}`);
    process.exit(2);
  });
  return server;
}

module.exports = { listen };

if (require.main === module) {
  listen((actual) => console.log(`listening ${actual}`));
}
