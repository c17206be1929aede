// The parts of scripts/smoke that are not its steps: tokens, HTTP calls, one unchanged Chat21
// client per user with every callback recorded, the webhook receiver that checks Standard Webhooks
// signatures, percentiles, and keeping the client's own console output (scrubbed of tokens) for
// the diagnosis of a failure.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const util = require('node:util');

// ---------------------------------------------------------------------------------------------
// Tokens

const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** An HS256 token of `sub` in tenant `app`, valid for `ttlSecs`; admins get tiledesk_api_roles. */
function mintToken(key, { sub, app, ttlSecs, admin = false }) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { jti: crypto.randomUUID(), sub, app_id: app, iat: now, exp: now + ttlSecs, aud: ['rabbitmq', sub] };
  claims.tiledesk_api_roles = admin ? 'admin' : 'user';
  const signing = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${signing}.${crypto.createHmac('sha256', key).update(signing).digest('base64url')}`;
}

/** The claims of a token, unverified (the server verifies; this only reads `sub`, `app_id`, `exp`). */
function claimsOf(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new Error('not a JWT (three dot-separated parts)');
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  if (!claims || typeof claims !== 'object') throw new Error('its payload is not a JSON object');
  return claims;
}

// Whatever the client or a library prints may hold a token: never let one through.
const JWT_LIKE = /eyJ[\w-]*\.[\w-]+\.[\w-]+/g;
const scrub = (text) => String(text).replace(JWT_LIKE, '<jwt>');

// ---------------------------------------------------------------------------------------------
// The client's own console output: kept (flattened, scrubbed), shown under a failed step

const noise = [];
function keepNoise(kind, args) {
  let line;
  try {
    const flat = args.map((a) =>
      a instanceof Error ? `${a.name}: ${a.message}` + (a.response ? ` ${JSON.stringify(a.response.data)}` : '') : a
    );
    line = util.formatWithOptions({ depth: 1, breakLength: Infinity }, ...flat).replace(/\s*\n\s*/g, ' ');
  } catch (e) {
    line = String(args[0]);
  }
  line = scrub(line);
  noise.push(`${kind}: ${line.length > 300 ? line.slice(0, 300) + '…' : line}`);
  if (noise.length > 200) noise.shift();
}
/** Routes console.log/error (the client's) into the kept noise; the smoke writes to stdout itself. */
function captureConsole() {
  console.log = (...args) => keepNoise('log', args);
  console.error = (...args) => keepNoise('error', args);
  console.warn = (...args) => keepNoise('warn', args);
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** One API call; resolves {status, json, ms}; throws on a network error or a non-JSON answer. */
async function api(base, method, route, token, body, timeoutMs) {
  const url = `${base}/api${route}`;
  const t0 = performance.now();
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: { Authorization: token, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new Error(`${method} ${route}: ${e.cause ? e.cause.message || e.cause.code : e.message}`);
  }
  const text = await res.text();
  const ms = performance.now() - t0;
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${method} ${route}: ${res.status} with a non-JSON body: ${scrub(text.slice(0, 200))}`);
  }
  return { status: res.status, json, ms };
}

/** `api`, and the answer must be one of `statuses` (default 2xx with success: true). */
async function apiExpect(base, method, route, token, body, timeoutMs, statuses) {
  const answer = await api(base, method, route, token, body, timeoutMs);
  const ok = statuses ? statuses.includes(answer.status) : answer.status >= 200 && answer.status < 300 && answer.json.success === true;
  if (!ok) {
    const hint = answer.status === 401 ? ' (is the token signed with the deployment\'s key?)' : '';
    throw new Error(`${method} ${route} answered ${answer.status}${hint}: ${scrub(JSON.stringify(answer.json)).slice(0, 300)}`);
  }
  return answer;
}

// ---------------------------------------------------------------------------------------------
// Users: one unchanged Chat21Client each, every callback recorded with its arrival time

const KINDS = {
  messageAdded: 'onMessageAdded',
  messageUpdated: 'onMessageUpdated',
  conversationUpdated: 'onConversationUpdated',
  conversationDeleted: 'onConversationDeleted',
  archivedConversationAdded: 'onArchivedConversationAdded',
  archivedConversationDeleted: 'onArchivedConversationDeleted',
  groupUpdated: 'onGroupUpdated',
};

function brief(payload) {
  if (!payload || typeof payload !== 'object') return JSON.stringify(payload);
  const label = payload.attributes && payload.attributes.messagelabel;
  if (label) return `${label.key}(${JSON.stringify(label.parameters || {})})`;
  if (payload.text !== undefined) return JSON.stringify(String(payload.text).slice(0, 40));
  if (payload.uid) return `group ${payload.uid} members=${Object.keys(payload.members || {}).length}`;
  return JSON.stringify(payload).slice(0, 80);
}

class Peer {
  /** `Chat21Client`: the class of the unchanged chat21client.js; `config`: {app, mqttUrl, apiBase, timeoutMs}. */
  constructor(Chat21Client, config, name, id, token) {
    Object.assign(this, { Chat21Client, config, name, id, token });
    this.fullname = `Smoke ${name}`;
    this.client = null;
    this.events = []; // {kind, payload, conversWith, at} in arrival order
    this.waiters = [];
    this.since = 0; // waits look at the events from this index on (set at each step's start)
  }

  record(kind, payload, topic) {
    const ev = { kind, payload, conversWith: topic && topic.conversWith, at: performance.now() };
    this.events.push(ev);
    for (const w of this.waiters.slice()) {
      if (w.kind === kind && matches(w.pred, ev)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(ev);
      }
    }
  }

  /** The first event of `kind` since the step began that satisfies `pred`, or a timeout error. */
  wait(kind, pred, what) {
    const found = this.events.slice(this.since).find((ev) => ev.kind === kind && matches(pred, ev));
    if (found) return Promise.resolve(found);
    const timeout = this.config.timeoutMs;
    return new Promise((resolve, reject) => {
      const w = { kind, pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        const recent = this.events.slice(-6).map((ev) => `${KINDS[ev.kind]}[${ev.conversWith}] ${brief(ev.payload)}`);
        reject(new Error(`${this.name} did not get ${what} (${KINDS[kind]}) within ${timeout} ms; its last events: ${recent.join('; ') || 'none'}`));
      }, timeout);
      this.waiters.push(w);
    });
  }

  /** Connects the unchanged client (password = JWT); resolves once its subscription is granted. */
  connect() {
    const { app, mqttUrl, apiBase, timeoutMs } = this.config;
    const c = new this.Chat21Client({ appId: app, MQTTendpoint: mqttUrl, APIendpoint: `${apiBase}/api`, log: false });
    this.client = c;
    for (const [kind, method] of Object.entries(KINDS)) c[method]((payload, topic) => this.record(kind, payload, topic));
    return new Promise((resolve, reject) => {
      let lastError = null;
      const fail = (why) => {
        clearTimeout(timer);
        if (c.client) c.client.end(true); // the client would otherwise reconnect every second forever
        reject(new Error(`${this.name}: ${why}`));
      };
      const timer = setTimeout(() => {
        const why = lastError ? `; last error: ${scrub(lastError.message)}` : '';
        fail(`not connected and subscribed within ${timeoutMs} ms${why} (a refused token may also show as a closed connection)`);
      }, timeoutMs);
      c.connect(this.id, this.token, () => {
        // Called on CONNACK 0, right after SUBSCRIBE was written: wait for its SUBACK.
        const onPacket = (packet) => {
          if (packet.cmd !== 'suback') return;
          c.client.removeListener('packetreceive', onPacket);
          clearTimeout(timer);
          if (packet.granted.some((qos) => qos >= 0x80)) {
            fail(`the subscription to ${c.topic_inbox} was refused (is the app id of the tokens ${app}?)`);
          } else {
            resolve();
          }
        };
        c.client.on('packetreceive', onPacket);
      });
      c.client.on('error', (e) => {
        lastError = e;
        if (typeof e.code === 'number') {
          const reason = e.code === 5 ? 'not authorized: is the token signed with the deployment\'s key?' : scrub(e.message);
          fail(`CONNECT refused with return code ${e.code} (${reason})`);
        }
      });
    });
  }

  /** Closes the client (unsubscribe, disconnect) within the timeout. */
  close() {
    const c = this.client;
    if (!c || !c.client) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        c.client.end(true);
        reject(new Error(`${this.name}: close() did not finish within ${this.config.timeoutMs} ms`));
      }, this.config.timeoutMs);
      const done = () => (clearTimeout(timer), resolve());
      if (c.topic_inbox) c.close(done);
      else c.client.end(true, {}, done);
    });
  }
}

function matches(pred, ev) {
  try {
    return pred(ev.payload, ev.conversWith);
  } catch (e) {
    return false;
  }
}

/** Runs a callback-style client method; rejects on its error or if it never calls back. */
function call(what, timeoutMs, invoke) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no callback within ${timeoutMs} ms`)), timeoutMs);
    invoke((err, result) => {
      clearTimeout(timer);
      if (err) {
        const detail = err.response ? `HTTP ${err.response.status} ${JSON.stringify(err.response.data)}` : err.message || String(err);
        reject(new Error(`${what} failed: ${scrub(detail)}`));
      } else {
        resolve(result);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver: every POST kept as it came (raw body), answered 200 at once

class WebhookReceiver {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.received = []; // {headers, raw, at}
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        this.received.push({ method: req.method, headers: req.headers, raw: Buffer.concat(chunks).toString('utf8'), at: performance.now() });
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
      });
    });
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', (e) => reject(new Error(`the webhook receiver cannot listen on ${this.host}:${this.port}: ${e.message}`)));
      this.server.listen(this.port, this.host, resolve);
    });
  }

  close() {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}

/**
 * Checks one POST against Standard Webhooks: `webhook-signature` holds a `v1,` HMAC-SHA256 of
 * `{webhook-id}.{webhook-timestamp}.{raw body}` keyed with the secret (for `whsec_…`, its base64
 * rest), and the timestamp is within 5 minutes. Returns null if it verifies, else why not.
 */
function signatureProblem(secret, headers, raw) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !ts || !signatures) return 'webhook-id, webhook-timestamp or webhook-signature is missing';
  if (!/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return `webhook-timestamp ${ts} is not within 5 minutes of now`;
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret, 'utf8');
  const expected = crypto.createHmac('sha256', key).update(`${id}.${ts}.${raw}`).digest();
  const good = signatures.split(' ').some((s) => {
    const sig = s.startsWith('v1,') ? Buffer.from(s.slice(3), 'base64') : Buffer.alloc(0);
    return sig.length === expected.length && crypto.timingSafeEqual(sig, expected);
  });
  return good ? null : 'webhook-signature does not verify with the endpoint\'s secret';
}

// ---------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile (p in 0–100) of a non-empty list of numbers. */
function percentile(values, p) {
  const sorted = values.slice().sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

module.exports = {
  mintToken,
  claimsOf,
  scrub,
  noise,
  captureConsole,
  api,
  apiExpect,
  Peer,
  call,
  WebhookReceiver,
  signatureProblem,
  percentile,
  sleep,
};
