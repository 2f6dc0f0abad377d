// Runs a command (a database migration) with lifeguard's maintenance mode on
// in every pod of the app, and turns it off afterwards, also when the command
// fails.
//
//   node maintenance.js -- <command> [args...]
//
// How each pod is reached: LIFEGUARD_ADMIN_HOST is the headless admin
// Service, whose DNS name resolves to every pod's IP (ready or not); each
// lifeguard gets `POST /admin/maintenance?state=on|off` on its admin port
// with the bearer token of admin.token_file (the same Secret, mounted here).
// Pods that start while the command runs are not switched on; the "off" pass
// resolves the name again so every pod present then is switched off.
//
// Environment:
//   LIFEGUARD_ADMIN_HOST   headless Service name (e.g. demo-lifeguard-admin)
//   LIFEGUARD_ADMIN_PORT   admin port (default 9901)
//   LIFEGUARD_TOKEN_FILE   file with the admin bearer token
//   LIFEGUARD_ATTEMPTS     tries per pod and state (default 5, 1 s apart)
'use strict';
const dns = require('node:dns').promises;
const fs = require('node:fs');
const { spawn } = require('node:child_process');

const host = process.env.LIFEGUARD_ADMIN_HOST;
const port = Number(process.env.LIFEGUARD_ADMIN_PORT || 9901);
const tokenFile = process.env.LIFEGUARD_TOKEN_FILE;
const attempts = Number(process.env.LIFEGUARD_ATTEMPTS || 5);
const dash = process.argv.indexOf('--');
const command = dash >= 0 ? process.argv.slice(dash + 1) : [];

function log(message, fields = {}) {
  console.log(JSON.stringify({ time: new Date().toISOString(), message, ...fields }));
}

async function pods() {
  const found = await dns.lookup(host, { all: true });
  return [...new Set(found.map((a) => (a.family === 6 ? `[${a.address}]` : a.address)))];
}

async function setOne(addr, state, token) {
  const url = `http://${addr}:${port}/admin/maintenance?state=${state}`;
  let last = '';
  for (let i = 1; i <= attempts; i++) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(5000),
      });
      const body = (await res.text()).trim();
      if (res.ok) return null;
      last = `${res.status} ${body}`;
      // 401/403/404: retrying will not help.
      if ([401, 403, 404].includes(res.status)) break;
    } catch (e) {
      last = String(e.cause || e);
    }
    if (i < attempts) await new Promise((r) => setTimeout(r, 1000));
  }
  return last;
}

// Sets `state` on every pod; returns the addresses that failed.
async function setAll(state, token) {
  const addrs = await pods();
  const results = await Promise.all(addrs.map((a) => setOne(a, state, token)));
  const failed = addrs.filter((a, i) => results[i] !== null);
  addrs.forEach((a, i) =>
    log(`maintenance ${state}`, { pod: a, ok: results[i] === null, error: results[i] || undefined }));
  return { addrs, failed };
}

function run(argv) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit' });
    child.on('error', (e) => { log('command failed to start', { error: String(e) }); resolve(127); });
    child.on('exit', (code, signal) => resolve(code === null ? 128 + (signal === 'SIGKILL' ? 9 : 15) : code));
  });
}

async function main() {
  if (!host || !tokenFile || command.length === 0) {
    console.error('usage: LIFEGUARD_ADMIN_HOST=... LIFEGUARD_TOKEN_FILE=... node maintenance.js -- <command> [args...]');
    return 64;
  }
  const token = fs.readFileSync(tokenFile, 'utf8').trim();
  let code = 1;
  try {
    const on = await setAll('on', token);
    if (on.addrs.length === 0) throw new Error(`${host} resolves to no pod`);
    if (on.failed.length > 0) throw new Error(`maintenance could not be turned on in ${on.failed.join(', ')}`);
    log('maintenance on in every pod; running the command', { pods: on.addrs.length, command });
    code = await run(command);
    log('command finished', { exit_code: code });
  } catch (e) {
    log('not running the command', { error: String(e.message || e) });
  } finally {
    const off = await setAll('off', token).catch((e) => ({ addrs: [], failed: [String(e)] }));
    if (off.failed.length > 0) {
      log('maintenance could not be turned off everywhere: do it by hand', { failed: off.failed });
      if (code === 0) code = 1;
    }
  }
  return code;
}

main().then((code) => process.exit(code));
