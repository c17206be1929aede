// scripts/smoke's configuration: its arguments, where the stack is (the stack's outputs, read
// with the AWS CLI, or URLs), who the clients are (tokens minted with JWT_KEY from the
// environment, or ready-made ones), and Chat21's client, installed by setup.sh. A usage or
// configuration error ends the process with exit status 2 and the usage.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const S = require('./smoke-support.js');

const REPO = path.resolve(__dirname, '..', '..');
const USAGE = `usage: scripts/smoke [options]

Where the stack is (one of):
  --stack-name NAME       read the ApiUrl and MqttUrl outputs with \`aws cloudformation
                          describe-stacks\` (default: chat21-serverless, samconfig.toml's)
  --region REGION         the stack's region (default: the AWS CLI's)
  --api-url URL           the API's base URL (the ApiUrl output), instead of the stack's
  --mqtt-url URL          the MQTT-over-WebSocket URL (the MqttUrl output), instead of the stack's

Who the clients are (one of):
  JWT_KEY=...             environment variable: the deployment's HS256 secret; the smoke mints
                          15-minute tokens for fresh users of this run (never printed)
  --tokens FILE           ready-made tokens (RS256 deployments): a JSON file
                          {"users": [three tokens of app --app], "admin": "token (for --webhook-url)"}

Options:
  --app APP               tenant (default tilechat: chat21client.js hard-codes it in its
                          subscription, archive and presence topics, so another app cannot pass)
  --webhook-url URL       register a tenant webhook endpoint at URL (admin token), which must
  --webhook-listen [HOST:]PORT  reach this script's receiver on HOST:PORT (default host 127.0.0.1);
                          checks that a signed message-sent arrives, then deletes the endpoint
  --messages N            HTTP sends timed for the latency summary (default 20)
  --timeout SECONDS       how long each awaited event may take (default 20)
  -h, --help`;

// ---------------------------------------------------------------------------------------------
// Arguments and configuration

function usageError(message) {
  process.stderr.write(`scripts/smoke: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const known = ['stack-name', 'region', 'api-url', 'mqtt-url', 'tokens', 'app', 'webhook-url', 'webhook-listen', 'messages', 'timeout'];
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (!m || !known.includes(m[1])) usageError(`unknown argument ${JSON.stringify(arg)}`);
    const value = m[2] !== undefined ? m[2] : argv[++i];
    if (value === undefined || value === '') usageError(`--${m[1]} needs a value`);
    opts[m[1]] = value;
  }
  return opts;
}

function positiveInt(opts, name, fallback) {
  const value = opts[name] === undefined ? fallback : Number(opts[name]);
  if (!Number.isInteger(value) || value < 1) usageError(`--${name} must be a positive integer`);
  return value;
}

/** The stack's ApiUrl and MqttUrl outputs, read with the AWS CLI. */
function stackOutputs(stack, region) {
  const args = ['cloudformation', 'describe-stacks', '--stack-name', stack, '--query', 'Stacks[0].Outputs', '--output', 'json'];
  if (region) args.push('--region', region);
  let text;
  try {
    text = execFileSync('aws', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const why = e.code === 'ENOENT' ? 'the AWS CLI (aws) is not installed' : String(e.stderr || e.message).trim();
    usageError(`cannot read the outputs of stack ${stack}: ${why}\n(or pass --api-url and --mqtt-url)`);
  }
  const outputs = Object.fromEntries((JSON.parse(text) || []).map((o) => [o.OutputKey, o.OutputValue]));
  if (!outputs.ApiUrl || !outputs.MqttUrl) usageError(`stack ${stack} has no ApiUrl and MqttUrl outputs`);
  return { apiUrl: outputs.ApiUrl, mqttUrl: outputs.MqttUrl };
}

function configure() {
  const opts = parseArgs(process.argv.slice(2));
  const app = opts.app || 'tilechat';
  if ((opts['api-url'] === undefined) !== (opts['mqtt-url'] === undefined)) usageError('give both --api-url and --mqtt-url, or neither');
  if ((opts['webhook-url'] === undefined) !== (opts['webhook-listen'] === undefined)) {
    usageError('give both --webhook-url and --webhook-listen, or neither');
  }
  const where = opts['api-url']
    ? { apiUrl: opts['api-url'], mqttUrl: opts['mqtt-url'] }
    : stackOutputs(opts['stack-name'] || 'chat21-serverless', opts.region);
  // ApiUrl is https://…/ ; the routes are under /api (the client's APIendpoint is {base}/api).
  const apiBase = where.apiUrl.replace(/\/+$/, '').replace(/\/api$/, '');
  if (!/^https?:\/\/[^/]/.test(apiBase)) usageError(`the API URL ${where.apiUrl} is not an http(s) URL`);
  if (!/^wss?:\/\/[^/]/.test(where.mqttUrl)) usageError(`the MQTT URL ${where.mqttUrl} is not a ws(s) URL`);

  let webhook = null;
  if (opts['webhook-url']) {
    const m = /^(?:(.+):)?(\d+)$/.exec(opts['webhook-listen']);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) usageError('--webhook-listen must be PORT or HOST:PORT');
    webhook = { url: opts['webhook-url'], host: m[1] || '127.0.0.1', port: Number(m[2]) };
  }
  return {
    app,
    apiBase,
    mqttUrl: where.mqttUrl,
    tokensFile: opts.tokens,
    webhook,
    messages: positiveInt(opts, 'messages', 20),
    timeoutMs: positiveInt(opts, 'timeout', 20) * 1000,
  };
}

const TOKEN_TTL_SECS = 15 * 60; // IoT Core refuses a CONNECT whose token has less than 5 minutes left

/** Three users and an admin: minted with JWT_KEY for users of run `run`, or read from --tokens. */
function credentials(config, run) {
  if (config.tokensFile) {
    let file;
    try {
      file = JSON.parse(fs.readFileSync(config.tokensFile, 'utf8'));
    } catch (e) {
      usageError(`--tokens ${config.tokensFile}: ${e.message}`);
    }
    if (!file || !Array.isArray(file.users) || file.users.length < 3) usageError('--tokens: "users" must hold three tokens');
    if (config.webhook && !file.admin) usageError('--tokens: --webhook-url needs an "admin" token (tiledesk_api_roles: admin)');
    const read = (token, what) => {
      let claims;
      try {
        claims = S.claimsOf(token);
      } catch (e) {
        usageError(`--tokens: the ${what} token: ${e.message}`);
      }
      if (claims.app_id !== config.app) usageError(`--tokens: the ${what} token is of app ${claims.app_id}, not ${config.app}`);
      const left = Number(claims.exp) - Date.now() / 1000;
      if (!(left > 6 * 60)) usageError(`--tokens: the ${what} token expires in ${Math.floor(left)} s (IoT Core refuses less than 5 minutes)`);
      return { id: String(claims.sub), token };
    };
    const users = file.users.slice(0, 3).map((t, i) => read(t, `user ${i + 1}`));
    if (new Set(users.map((u) => u.id)).size !== 3) usageError('--tokens: the three user tokens need three different subjects');
    return { users, admin: file.admin ? read(file.admin, 'admin').token : null };
  }
  const key = process.env.JWT_KEY;
  if (!key) usageError('set JWT_KEY (the deployment\'s HS256 secret) in the environment, or pass --tokens FILE');
  const mint = (sub, admin) => S.mintToken(key, { sub, app: config.app, ttlSecs: TOKEN_TTL_SECS, admin });
  const users = [1, 2, 3].map((i) => ({ id: `${run}-u${i}`, token: mint(`${run}-u${i}`, false) }));
  return { users, admin: mint(`${run}-admin`, true) };
}

/** Puts the pinned, unchanged chat21client.js and its mqtt/axios in place; returns its class. */
function chat21Client() {
  let dir;
  try {
    dir = execFileSync(path.join(REPO, 'local/tests/chat21-client/setup.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  } catch (e) {
    usageError('could not install Chat21\'s client (local/tests/chat21-client/setup.sh needs node, npm and the npm registry)');
  }
  return require(path.join(dir.split('\n').pop(), 'mqttclient', 'chat21client.js')).Chat21Client;
}

module.exports = { configure, credentials, chat21Client };
