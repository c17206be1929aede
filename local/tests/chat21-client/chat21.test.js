#!/usr/bin/env node
// Drives Chat21's own MQTT client — mqttclient/chat21client.js of @chat21/chat21-server, unchanged,
// fetched by setup.sh — against a running server, as REALTIME.md and API.md describe it: connect,
// direct messages, groups (create, send, join with history, leave, set members, inline groups),
// archive and un-archive, read receipts and conversation reads, plus the broker's refusals.
//
//   CHAT21_HTTP        http://127.0.0.1:PORT          the HTTP API (the client uses $CHAT21_HTTP/api)
//   CHAT21_MQTT_WS     ws://127.0.0.1:PORT/ws         MQTT over WebSocket
//   CHAT21_JWT_KEY     the server's HS256 secret (tokens are minted here with node:crypto)
//   CHAT21_CLIENT_DIR  optional; where setup.sh put the client (default <repo>/target/chat21-client)
//   CHAT21_TIMEOUT_MS  optional; how long each awaited event may take (default 5000)
//   CHAT21_SETTLE_MS   optional; how long to wait before asserting that nothing arrived (default 300)
//   CHAT21_TEST_VERBOSE=1  show the client's own console output live
//
// One line per scenario (`ok`, `FAIL`, `skip`), a summary line; exit status 0 only if all passed.
// The app id is `tilechat`: chat21client.js hard-codes it in its subscription, archive and
// presence topics. User and group ids are fresh per run, so a server with older data is fine.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');

// ---------------------------------------------------------------------------------------------
// Configuration

const APP = 'tilechat';
const TIMEOUT = Number(process.env.CHAT21_TIMEOUT_MS || 5000);
const SETTLE = Number(process.env.CHAT21_SETTLE_MS || 300);
const VERBOSE = process.env.CHAT21_TEST_VERBOSE === '1';
const RUN_LIMIT = Math.max(120000, 40 * TIMEOUT); // the whole run, whatever hangs

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(
      `chat21.test.js: ${name} is not set.\n` +
        'Set CHAT21_HTTP (http://127.0.0.1:PORT), CHAT21_MQTT_WS (ws://127.0.0.1:PORT/ws) and ' +
        'CHAT21_JWT_KEY (the HS256 secret), and run setup.sh first.\n'
    );
    process.exit(2);
  }
  return value;
}
const HTTP = required('CHAT21_HTTP').replace(/\/+$/, '');
const MQTT_WS = required('CHAT21_MQTT_WS');
const JWT_KEY = required('CHAT21_JWT_KEY');

const HERE = __dirname;
const REPO = path.resolve(HERE, '..', '..', '..');
const TARGET = path.resolve(REPO, process.env.CARGO_TARGET_DIR || 'target');
const CLIENT_DIR = process.env.CHAT21_CLIENT_DIR || path.join(TARGET, 'chat21-client');
const CLIENT_JS = path.join(CLIENT_DIR, 'mqttclient', 'chat21client.js');
const PINS = JSON.parse(fs.readFileSync(path.join(HERE, 'package.json'), 'utf8')).config;

if (!fs.existsSync(CLIENT_JS)) {
  process.stderr.write(`chat21.test.js: ${CLIENT_JS} is missing: run ${path.join(HERE, 'setup.sh')} first.\n`);
  process.exit(2);
}
const clientSha = crypto.createHash('sha256').update(fs.readFileSync(CLIENT_JS)).digest('hex');
if (clientSha !== PINS.chat21client_sha256) {
  process.stderr.write(`chat21.test.js: ${CLIENT_JS} is not the pinned, unchanged file (sha256 ${clientSha}).\n`);
  process.exit(2);
}

// The client logs a lot (console.log on some calls even with log: false, console.error on every
// axios or MQTT error). Keep it out of the summary; show the tail of it under a failure.
const out = (line) => process.stdout.write(line + '\n');
const noise = [];
function keep(kind, args) {
  let line;
  try {
    // Errors (axios's carry the whole request) as one line: message and HTTP answer, no stack.
    const flat = args.map((a) =>
      a instanceof Error
        ? `${a.name}: ${a.message}` + (a.response ? ` ${JSON.stringify(a.response.data)}` : '')
        : a
    );
    line = util.formatWithOptions({ depth: 1, breakLength: Infinity }, ...flat).replace(/\s*\n\s*/g, ' ');
  } catch (e) {
    line = String(args[0]);
  }
  noise.push(`${kind}: ${line.length > 300 ? line.slice(0, 300) + '…' : line}`);
  if (noise.length > 200) noise.shift();
}
if (!VERBOSE) {
  console.log = (...args) => keep('log', args);
  console.error = (...args) => keep('error', args);
}

const { Chat21Client } = require(CLIENT_JS);
// The same mqtt package the client uses, for the checks the client cannot make (refusals).
const mqtt = require(path.join(CLIENT_DIR, 'node_modules', 'mqtt'));

// ---------------------------------------------------------------------------------------------
// Tokens (HS256, node:crypto) and plain HTTP (for reads the client only does in a browser)

const RUN = crypto.randomBytes(4).toString('hex');
const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function token(sub, { app = APP, key = JWT_KEY, expiresIn = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  // The claims of a Tiledesk-minted token; only sub, app_id and exp matter.
  const claims = {
    jti: crypto.randomUUID(),
    sub,
    app_id: app,
    iat: now,
    exp: now + expiresIn,
    aud: ['rabbitmq', sub],
    kid: 'tiledesk-key',
    tiledesk_api_roles: 'user',
  };
  const signing = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  const signature = crypto.createHmac('sha256', key).update(signing).digest('base64url');
  return `${signing}.${signature}`;
}

async function api(method, route, tok, body) {
  const url = `${HTTP}/api/${APP}${route}`;
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: { Authorization: tok, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT),
    });
  } catch (e) {
    throw new Error(`${method} ${url}: ${e.message}`);
  }
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${method} ${url}: ${res.status} with a non-JSON body: ${text.slice(0, 200)}`);
  }
  return { status: res.status, json };
}

async function apiOk(method, route, tok, body) {
  const { status, json } = await api(method, route, tok, body);
  assert.ok(status >= 200 && status < 300, `${method} ${route} answered ${status}: ${JSON.stringify(json)}`);
  assert.equal(json.success, true, `${method} ${route}: success is not true: ${JSON.stringify(json)}`);
  return json;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries `check` (which throws while unmet) until it passes or TIMEOUT; rethrows the last error. */
async function eventually(check) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() >= deadline) throw e;
      await sleep(100);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Users: one Chat21Client each, every callback recorded

const KINDS = {
  messageAdded: 'onMessageAdded',
  messageUpdated: 'onMessageUpdated',
  conversationAdded: 'onConversationAdded',
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
  if (payload.notification && payload.notification.messagelabel) {
    return `group ${payload.uid} ${payload.notification.messagelabel.key}`;
  }
  if (payload.text !== undefined) return JSON.stringify(String(payload.text).slice(0, 40));
  if (payload.uid) return `group ${payload.uid} members=${Object.keys(payload.members || {}).join(',')}`;
  return JSON.stringify(payload).slice(0, 80);
}

class User {
  constructor(name) {
    this.name = name;
    this.id = `${name}-${RUN}`;
    this.fullname = `User ${name}`;
    this.jwt = token(this.id);
    this.client = null;
    this.events = []; // {kind, payload, conversWith} in arrival order
    this.topics = []; // every raw topic received, for exact-topic checks and diagnostics
    this.waiters = [];
    this.since = 0; // waits and absence checks look at events from here on (set per scenario)
  }

  record(kind, payload, topic) {
    const ev = { kind, payload, conversWith: topic && topic.conversWith, index: this.events.length };
    this.events.push(ev);
    for (const w of this.waiters.slice()) {
      if (w.kind === kind && matches(w.pred, ev)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(ev);
      }
    }
  }

  recent(n = 10) {
    const evs = this.events.slice(this.since).slice(-n);
    if (evs.length === 0) return 'nothing';
    return evs.map((ev) => `${KINDS[ev.kind]}[${ev.conversWith}] ${brief(ev.payload)}`).join('; ');
  }

  /** Resolves with the first event of `kind` since the scenario began that satisfies `pred`. */
  wait(kind, pred, what) {
    const found = this.events.slice(this.since).find((ev) => ev.kind === kind && matches(pred, ev));
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { kind, pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(
          new Error(
            `${this.name} did not get ${what} via ${KINDS[kind]} within ${TIMEOUT} ms ` +
              `(received since the scenario began: ${this.recent()})`
          )
        );
      }, TIMEOUT);
      this.waiters.push(w);
    });
  }

  /** Fails if an event of `kind` satisfying `pred` arrived since the scenario began. */
  none(kind, pred, what) {
    const found = this.events.slice(this.since).find((ev) => ev.kind === kind && matches(pred, ev));
    if (found) {
      throw new Error(`${this.name} got ${what} via ${KINDS[kind]} but must not: ${JSON.stringify(found.payload)}`);
    }
  }

  /** Connects the unchanged client; resolves once the server has granted its subscription. */
  connect() {
    const c = newClient();
    this.client = c;
    for (const [kind, method] of Object.entries(KINDS)) {
      c[method]((payload, topic) => this.record(kind, payload, topic));
    }
    return new Promise((resolve, reject) => {
      let lastError = null;
      const timer = setTimeout(() => {
        if (c.client) c.client.end(true);
        const why = lastError ? ` (last error: ${lastError.message})` : '';
        reject(new Error(`${this.name} not connected and subscribed within ${TIMEOUT} ms${why}`));
      }, TIMEOUT);
      c.connect(this.id, this.jwt, () => {
        // Called on CONNACK 0, right after SUBSCRIBE was written: wait for its SUBACK.
        const mc = c.client;
        mc.on('message', (topic) => this.topics.push(topic));
        const onPacket = (packet) => {
          if (packet.cmd !== 'suback') return;
          mc.removeListener('packetreceive', onPacket);
          clearTimeout(timer);
          if (packet.granted.some((qos) => qos >= 0x80)) {
            reject(new Error(`${this.name}: the subscription to ${c.topic_inbox} was refused (${packet.granted})`));
          } else {
            resolve();
          }
        };
        mc.on('packetreceive', onPacket);
      });
      c.client.on('error', (e) => {
        lastError = e;
        if (typeof e.code === 'number') {
          // A CONNACK refusal: the client would retry every second forever.
          clearTimeout(timer);
          c.client.end(true);
          reject(new Error(`${this.name}: CONNECT refused with return code ${e.code} (${e.message})`));
        }
      });
    });
  }
}

function newClient() {
  return new Chat21Client({ appId: APP, MQTTendpoint: MQTT_WS, APIendpoint: `${HTTP}/api`, log: false });
}

function matches(pred, ev) {
  try {
    return pred(ev.payload, ev.conversWith);
  } catch (e) {
    return false;
  }
}

/** Runs a callback-style client method; rejects on its error or if it never calls back. */
function call(what, invoke) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no callback within ${TIMEOUT} ms`)), TIMEOUT);
    invoke((err, result) => {
      clearTimeout(timer);
      if (err) {
        const detail = err.response
          ? `HTTP ${err.response.status} ${JSON.stringify(err.response.data)}`
          : err.message || String(err);
        reject(new Error(`${what} failed: ${detail}`));
      } else {
        resolve(result);
      }
    });
  });
}

const label = (m) => m && m.attributes && m.attributes.messagelabel;
const isLabel = (m, key, group) => m.recipient === group && label(m) && label(m).key === key;
const memberIds = (g) => Object.keys((g && g.members) || {}).sort();

// ---------------------------------------------------------------------------------------------
// Checks shared by scenarios

/** A copy of one message in `owner`'s timeline, as a Chat21 client expects it. */
function checkCopy(ev, owner, { sender, recipient, conversWith, status, text, channel }) {
  const m = ev.payload;
  const who = `${owner.name}'s copy of ${JSON.stringify(text)}`;
  assert.equal(ev.conversWith, conversWith, `${who}: the topic's conversation segment`);
  assert.equal(m.text, text, `${who}: text`);
  assert.equal(m.sender, sender, `${who}: sender`);
  assert.equal(m.recipient, recipient, `${who}: recipient`);
  assert.equal(m.timelineOf, owner.id, `${who}: timelineOf`);
  assert.equal(m.conversWith, conversWith, `${who}: conversWith`);
  assert.equal(m.status, status, `${who}: status`);
  assert.equal(m.channel_type, channel, `${who}: channel_type`);
  assert.equal(m.app_id, APP, `${who}: app_id`);
  assert.equal(typeof m.message_id, 'string', `${who}: message_id`);
  assert.ok(m.message_id.length > 0, `${who}: message_id is empty`);
  assert.equal(typeof m.timestamp, 'number', `${who}: timestamp`);
}

function checkSystemMessage(ev, owner, group, key, parameters) {
  const m = ev.payload;
  const who = `${owner.name}'s ${key} message`;
  assert.equal(ev.conversWith, group, `${who}: the topic's conversation segment`);
  assert.equal(m.sender, 'system', `${who}: sender`);
  assert.equal(m.channel_type, 'group', `${who}: channel_type`);
  assert.equal(m.timelineOf, owner.id, `${who}: timelineOf`);
  assert.equal(m.conversWith, group, `${who}: conversWith`);
  assert.equal(m.attributes.subtype, 'info', `${who}: attributes.subtype`);
  assert.ok(label(m).parameters, `${who}: messagelabel.parameters missing`);
  for (const [name, value] of Object.entries(parameters)) {
    assert.equal(label(m).parameters[name], value, `${who}: messagelabel.parameters.${name}`);
  }
}

async function send(user, text, to, toName, channel, attributes = null) {
  const sent = await call(`${user.name}.sendMessage(${JSON.stringify(text)})`, (cb) =>
    user.client.sendMessage(text, 'text', to, toName, user.fullname, attributes, null, channel, cb)
  );
  assert.equal(sent.text, text, 'sendMessage hands back the payload it published');
  return sent;
}

// ---------------------------------------------------------------------------------------------
// Scenarios (in order; each names the scenarios whose state it builds on)

const u1 = new User('u1');
const u2 = new User('u2');
const u3 = new User('u3');
const USERS = [u1, u2, u3];
const S = {}; // state handed from scenario to scenario
const scenarios = [];
const scenario = (name, needs, fn) => scenarios.push({ name, needs, fn });

scenario('connect: three Chat21Clients connect (password = JWT) and get their subscription granted', [], async () => {
  await Promise.all(USERS.map((u) => u.connect()));
  for (const u of USERS) {
    assert.equal(u.client.connected, true, `${u.name}: client.connected`);
    assert.equal(u.client.topic_inbox, `apps/${APP}/users/${u.id}/#`, `${u.name}: subscription`);
  }
});

scenario('auth: a forged and an expired token are refused at CONNECT (return code 5)', [], async () => {
  // Through the unchanged client, which would otherwise retry every second forever.
  for (const [what, tok] of [
    ['a token signed with another key', token(u1.id, { key: `${JWT_KEY}-wrong` })],
    ['an expired token', token(u1.id, { expiresIn: -60 })],
  ]) {
    const c = newClient();
    const code = await new Promise((resolve, reject) => {
      let lastError = null;
      const timer = setTimeout(() => {
        const why = lastError ? ` (last error: ${lastError.message})` : ' (nor any error: no CONNACK at all?)';
        reject(new Error(`${what}: no CONNACK refusal within ${TIMEOUT} ms${why}`));
      }, TIMEOUT);
      c.connect(u1.id, tok, () => {
        clearTimeout(timer);
        reject(new Error(`${what} was accepted at CONNECT`));
      });
      c.client.on('error', (e) => {
        lastError = e;
        if (typeof e.code === 'number') {
          // mqtt.js reports a CONNACK return code as a numeric error code.
          clearTimeout(timer);
          resolve(e.code);
        }
      });
    }).finally(() => c.client.end(true));
    assert.equal(code, 5, `${what}: CONNACK return code (5 = not authorized)`);
  }
});

scenario('acl: no subscription outside one\'s own tree (0x80), forged publishes change nothing', ['connect'], async () => {
  // A plain connection of u1 (same mqtt package, same options as Chat21's) tries to read u2's
  // tree, to write u2's server topics and to send as u2.
  const raw = mqtt.connect(MQTT_WS, {
    clientId: `raw-${crypto.randomUUID()}`,
    username: 'JWT',
    password: u1.jwt,
    keepalive: 10,
    reconnectPeriod: 0,
  });
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`raw connection of u1 not accepted within ${TIMEOUT} ms`)), TIMEOUT);
      raw.once('connect', () => (clearTimeout(timer), resolve()));
      raw.once('error', (e) => (clearTimeout(timer), reject(new Error(`raw connection of u1: ${e.message}`))));
    });
    const granted = await call('SUBSCRIBE to another user\'s tree', (cb) =>
      raw.subscribe(`apps/${APP}/users/${u2.id}/#`, { qos: 0 }, cb)
    );
    assert.equal(granted[0].qos, 0x80, `u1 subscribing apps/${APP}/users/${u2.id}/#: SUBACK return code`);
    const wildcard = await call('SUBSCRIBE to every user', (cb) => raw.subscribe(`apps/${APP}/users/+/messages/#`, { qos: 0 }, cb));
    assert.equal(wildcard[0].qos, 0x80, `u1 subscribing apps/${APP}/users/+/messages/#: SUBACK return code`);

    const fake = `forged clientadded ${RUN}`;
    const fakeSend = `forged send ${RUN}`;
    raw.publish(
      `apps/${APP}/users/${u2.id}/messages/${u1.id}/clientadded`,
      JSON.stringify({ text: fake, sender: u1.id, recipient: u2.id, timelineOf: u2.id, conversWith: u1.id, status: 150 })
    );
    raw.publish(
      `apps/${APP}/outgoing/users/${u2.id}/messages/${u1.id}/outgoing`,
      JSON.stringify({ text: fakeSend, type: 'text', sender_fullname: 'x', recipient_fullname: 'y', channel_type: 'direct' })
    );
    // A legitimate message after them, then the forgeries must have had no effect.
    const legit = `after forgeries ${RUN}`;
    await send(u1, legit, u2.id, u2.fullname, 'direct');
    await u2.wait('messageAdded', (m) => m.text === legit, `the direct message ${JSON.stringify(legit)}`);
    await sleep(SETTLE);
    u2.none('messageAdded', (m) => m.text === fake, 'a clientadded forged by u1');
    u1.none('messageAdded', (m) => m.text === fakeSend, 'a message sent in u2\'s name by u1');
    u2.none('messageAdded', (m) => m.text === fakeSend, 'a message sent in u2\'s name by u1');
  } finally {
    raw.end(true);
  }
});

scenario('direct: u1 -> u2 and u2 -> u1, each seen by both sides with onMessageAdded, in order', ['connect'], async () => {
  const t1 = `direct 1 ${RUN}`;
  await send(u1, t1, u2.id, u2.fullname, 'direct');
  const toU2 = await u2.wait('messageAdded', (m) => m.text === t1, `u1's direct message ${JSON.stringify(t1)}`);
  checkCopy(toU2, u2, { sender: u1.id, recipient: u2.id, conversWith: u1.id, status: 150, text: t1, channel: 'direct' });
  assert.equal(toU2.payload.sender_fullname, u1.fullname, 'sender_fullname');
  assert.equal(toU2.payload.recipient_fullname, u2.fullname, 'recipient_fullname');
  assert.equal(toU2.payload.type, 'text', 'type');
  assert.ok(!('attributes' in toU2.payload), `sent with "attributes": null, delivered with attributes = ${JSON.stringify(toU2.payload.attributes)}`);
  assert.ok(!('metadata' in toU2.payload), `sent with "metadata": null, delivered with metadata = ${JSON.stringify(toU2.payload.metadata)}`);
  assert.ok(
    u2.topics.includes(`apps/${APP}/users/${u2.id}/messages/${u1.id}/clientadded`),
    `u2 got no publish on apps/${APP}/users/${u2.id}/messages/${u1.id}/clientadded`
  );
  const ownU1 = await u1.wait('messageAdded', (m) => m.text === t1, `its own copy of ${JSON.stringify(t1)}`);
  checkCopy(ownU1, u1, { sender: u1.id, recipient: u2.id, conversWith: u2.id, status: 100, text: t1, channel: 'direct' });
  assert.equal(ownU1.payload.message_id, toU2.payload.message_id, 'both copies carry the same message_id');
  await u2.wait('conversationAdded', (c, cw) => cw === u1.id && c.text === t1, 'the conversation with u1 (derived from the message)');

  const t2 = `direct 2 ${RUN}`;
  await send(u2, t2, u1.id, u1.fullname, 'direct', { source: 'chat21.test.js' });
  const toU1 = await u1.wait('messageAdded', (m) => m.text === t2, `u2's reply ${JSON.stringify(t2)}`);
  checkCopy(toU1, u1, { sender: u2.id, recipient: u1.id, conversWith: u2.id, status: 150, text: t2, channel: 'direct' });
  assert.deepEqual(toU1.payload.attributes, { source: 'chat21.test.js' }, 'attributes are delivered as sent');
  const ownU2 = await u2.wait('messageAdded', (m) => m.text === t2, `its own copy of ${JSON.stringify(t2)}`);
  checkCopy(ownU2, u2, { sender: u2.id, recipient: u1.id, conversWith: u1.id, status: 100, text: t2, channel: 'direct' });

  // Three quick sends on one connection arrive in the order they were published, on both sides.
  const burst = [1, 2, 3].map((i) => `burst ${i} ${RUN}`);
  for (const text of burst) await send(u1, text, u2.id, u2.fullname, 'direct');
  for (const u of [u1, u2]) {
    const seen = [];
    for (const text of burst) seen.push((await u.wait('messageAdded', (m) => m.text === text, JSON.stringify(text))).index);
    assert.deepEqual(seen, seen.slice().sort((a, b) => a - b), `${u.name} got the burst out of order`);
  }

  await sleep(SETTLE);
  u3.none('messageAdded', (m) => [t1, t2, ...burst].includes(m.text), 'a copy of a direct message between u1 and u2');
  S.direct = { lastText: burst[2] };
});

scenario('group create: GROUP_CREATED and MEMBER_JOINED_GROUP to every member, no onGroupUpdated', ['connect'], async () => {
  const gid = `group-${crypto.randomUUID()}`;
  const name = `Test group ${RUN}`;
  const res = await call('u1.groupCreate', (cb) => u1.client.groupCreate(name, gid, { [u2.id]: 1 }, cb));
  assert.equal(res.success, true, 'groupCreate: success');
  assert.equal(res.group.uid, gid, 'groupCreate: group.uid');
  assert.equal(res.group.name, name, 'groupCreate: group.name');
  assert.equal(res.group.owner, u1.id, 'groupCreate: group.owner (the creator)');
  assert.deepEqual(memberIds(res.group), [u1.id, u2.id].sort(), 'groupCreate: members (the creator is added)');

  for (const u of [u1, u2]) {
    const created = await u.wait('messageAdded', (m) => isLabel(m, 'GROUP_CREATED', gid), 'GROUP_CREATED');
    checkSystemMessage(created, u, gid, 'GROUP_CREATED', { creator: u1.id });
    for (const member of [u1, u2]) {
      const joined = await u.wait(
        'messageAdded',
        (m) => isLabel(m, 'MEMBER_JOINED_GROUP', gid) && label(m).parameters.member_id === member.id,
        `MEMBER_JOINED_GROUP of ${member.name}`
      );
      checkSystemMessage(joined, u, gid, 'MEMBER_JOINED_GROUP', { member_id: member.id });
    }
  }

  const data = await call('u1.groupData', (cb) => u1.client.groupData(gid, cb));
  assert.equal(data.success, true, 'groupData: success');
  assert.equal(data.result.uid, gid, 'groupData: uid');
  assert.equal(data.result.owner, u1.id, 'groupData: owner');
  assert.deepEqual(memberIds(data.result), [u1.id, u2.id].sort(), 'groupData: members');

  await sleep(SETTLE);
  // A creation pushes nothing on groups/ (REALTIME.md): the original server disabled it, and
  // its own suite counts one update per change. Members learn of the group from its messages.
  for (const u of [u1, u2]) u.none('groupUpdated', (g) => g.uid === gid, 'an update for the creation');
  u3.none('messageAdded', (m) => m.recipient === gid, 'a message of a group it is not in');
  u3.none('groupUpdated', (g) => g.uid === gid, 'an update of a group it is not in');
  S.group = { gid, name };
});

scenario('group send: a member\'s message reaches every member, the sender included', ['group create'], async () => {
  const { gid, name } = S.group;
  const g1 = `group 1 from u1 ${RUN}`;
  const g2 = `group 2 from u2 ${RUN}`;
  await send(u1, g1, gid, name, 'group');
  for (const u of [u1, u2]) {
    const ev = await u.wait('messageAdded', (m) => m.text === g1, JSON.stringify(g1));
    checkCopy(ev, u, { sender: u1.id, recipient: gid, conversWith: gid, status: 150, text: g1, channel: 'group' });
  }
  await send(u2, g2, gid, name, 'group');
  for (const u of [u1, u2]) {
    const ev = await u.wait('messageAdded', (m) => m.text === g2, JSON.stringify(g2));
    checkCopy(ev, u, { sender: u2.id, recipient: gid, conversWith: gid, status: 150, text: g2, channel: 'group' });
  }
  await sleep(SETTLE);
  u3.none('messageAdded', (m) => m.recipient === gid, 'a message of a group it is not in');
  S.group.history = [g1, g2];
});

scenario('group join: onGroupUpdated with MEMBER_JOINED_GROUP, the joiner gets the history', ['group send'], async () => {
  const { gid, name, history } = S.group;
  const res = await call('u1.groupJoin(u3)', (cb) => u1.client.groupJoin(gid, u3.id, cb));
  assert.equal(res && res.success, true, `groupJoin: success (answer ${JSON.stringify(res)})`);

  for (const u of [u1, u2, u3]) {
    const joined = await u.wait(
      'messageAdded',
      (m) => isLabel(m, 'MEMBER_JOINED_GROUP', gid) && label(m).parameters.member_id === u3.id,
      'MEMBER_JOINED_GROUP of u3'
    );
    checkSystemMessage(joined, u, gid, 'MEMBER_JOINED_GROUP', { member_id: u3.id });
    const updated = await u.wait(
      'groupUpdated',
      (g) => g.uid === gid && g.members[u3.id] !== undefined,
      'the group update adding u3'
    );
    assert.deepEqual(memberIds(updated.payload), [u1.id, u2.id, u3.id].sort(), `${u.name}: members after the join`);
    const n = updated.payload.notification;
    assert.ok(n && n.messagelabel, `${u.name}: the group update of a join carries no notification.messagelabel`);
    assert.equal(n.messagelabel.key, 'MEMBER_JOINED_GROUP', `${u.name}: notification key`);
    assert.equal(n.messagelabel.parameters.member_id, u3.id, `${u.name}: notification member_id`);
  }
  // History: what was said before u3 joined, copied into u3's timeline and pushed.
  for (const text of history) {
    const ev = await u3.wait('messageAdded', (m) => m.text === text, `the earlier group message ${JSON.stringify(text)} (history)`);
    assert.equal(ev.payload.recipient, gid, 'history copy: recipient');
    assert.equal(ev.payload.timelineOf, u3.id, 'history copy: timelineOf');
    assert.equal(ev.payload.conversWith, gid, 'history copy: conversWith');
    assert.equal(ev.conversWith, gid, 'history copy: topic segment');
    assert.equal(ev.payload.status, 150, 'history copy: status');
  }
  await u3.wait('messageAdded', (m) => isLabel(m, 'GROUP_CREATED', gid), 'GROUP_CREATED (history)');

  // The new member can now write to the group.
  const g3 = `group 3 from u3 ${RUN}`;
  await send(u3, g3, gid, name, 'group');
  for (const u of [u1, u2, u3]) {
    const ev = await u.wait('messageAdded', (m) => m.text === g3, JSON.stringify(g3));
    checkCopy(ev, u, { sender: u3.id, recipient: gid, conversWith: gid, status: 150, text: g3, channel: 'group' });
  }
});

scenario('group leave: onGroupUpdated with MEMBER_LEFT_GROUP to all, nothing more for the leaver', ['group join'], async () => {
  const { gid, name } = S.group;
  const res = await call('u3.groupLeave(u3)', (cb) => u3.client.groupLeave(gid, u3.id, cb));
  assert.equal(res && res.success, true, `groupLeave: success (answer ${JSON.stringify(res)})`);
  for (const u of [u1, u2, u3]) {
    const left = await u.wait(
      'messageAdded',
      (m) => isLabel(m, 'MEMBER_LEFT_GROUP', gid) && label(m).parameters.member_id === u3.id,
      'MEMBER_LEFT_GROUP of u3'
    );
    checkSystemMessage(left, u, gid, 'MEMBER_LEFT_GROUP', { member_id: u3.id });
    const updated = await u.wait(
      'groupUpdated',
      (g) => g.uid === gid && g.members[u3.id] === undefined,
      'the group update removing u3'
    );
    assert.deepEqual(memberIds(updated.payload), [u1.id, u2.id].sort(), `${u.name}: members after the leave`);
    const n = updated.payload.notification;
    assert.ok(n && n.messagelabel, `${u.name}: the group update of a leave carries no notification.messagelabel`);
    assert.equal(n.messagelabel.key, 'MEMBER_LEFT_GROUP', `${u.name}: notification key`);
    assert.equal(n.messagelabel.parameters.member_id, u3.id, `${u.name}: notification member_id`);
  }
  const g4 = `group 4 after u3 left ${RUN}`;
  await send(u1, g4, gid, name, 'group');
  for (const u of [u1, u2]) await u.wait('messageAdded', (m) => m.text === g4, JSON.stringify(g4));
  await sleep(SETTLE);
  u3.none('messageAdded', (m) => m.text === g4, 'a group message sent after it left');
  const data = await call('u1.groupData', (cb) => u1.client.groupData(gid, cb));
  assert.deepEqual(memberIds(data.result), [u1.id, u2.id].sort(), 'groupData: members after the leave');
  S.group.missedByU3 = g4;
});

scenario('group set members: removed and added members are told, the added one gets the history', ['group leave'], async () => {
  const { gid, name, missedByU3 } = S.group;
  const res = await call('u1.groupSetMembers({u1, u3})', (cb) => u1.client.groupSetMembers(gid, { [u1.id]: 1, [u3.id]: 1 }, cb));
  assert.equal(res.success, true, 'groupSetMembers: success');

  for (const u of [u1, u2, u3]) {
    const updated = await u.wait(
      'groupUpdated',
      (g) => g.uid === gid && g.members[u3.id] !== undefined && g.members[u2.id] === undefined,
      'the group update with members {u1, u3}'
    );
    assert.deepEqual(memberIds(updated.payload), [u1.id, u3.id].sort(), `${u.name}: members after set members`);
  }
  for (const u of [u1, u3]) {
    const joined = await u.wait(
      'messageAdded',
      (m) => isLabel(m, 'MEMBER_JOINED_GROUP', gid) && label(m).parameters.member_id === u3.id,
      'MEMBER_JOINED_GROUP of u3'
    );
    checkSystemMessage(joined, u, gid, 'MEMBER_JOINED_GROUP', { member_id: u3.id });
  }
  for (const u of [u1, u2]) {
    const left = await u.wait(
      'messageAdded',
      (m) => isLabel(m, 'MEMBER_LEFT_GROUP', gid) && label(m).parameters.member_id === u2.id,
      'MEMBER_LEFT_GROUP of u2'
    );
    checkSystemMessage(left, u, gid, 'MEMBER_LEFT_GROUP', { member_id: u2.id });
  }
  const missed = await u3.wait('messageAdded', (m) => m.text === missedByU3, `the message sent while it was out (history)`);
  assert.equal(missed.payload.timelineOf, u3.id, 'history copy: timelineOf');

  const data = await call('u1.groupData', (cb) => u1.client.groupData(gid, cb));
  assert.deepEqual(memberIds(data.result), [u1.id, u3.id].sort(), 'groupData: members after set members');

  const g5 = `group 5 after set members ${RUN}`;
  await send(u1, g5, gid, name, 'group');
  for (const u of [u1, u3]) await u.wait('messageAdded', (m) => m.text === g5, JSON.stringify(g5));
  await sleep(SETTLE);
  u2.none('messageAdded', (m) => m.text === g5, 'a group message sent after it was removed');
});

scenario('inline group: a send with group.members reaches them and the sender, creates no group', ['connect'], async () => {
  const gid = `group-inline-${crypto.randomUUID()}`;
  const text = `inline group ${RUN}`;
  const message = {
    text,
    type: 'text',
    recipient_fullname: 'Inline group',
    sender_fullname: u1.fullname,
    attributes: null,
    metadata: null,
    channel_type: 'group',
    group: { members: { [u2.id]: 1, [u3.id]: 1 } },
  };
  await call('u1.sendMessageRaw', (cb) => u1.client.sendMessageRaw(message, gid, cb));
  for (const u of [u1, u2, u3]) {
    const ev = await u.wait('messageAdded', (m) => m.text === text, JSON.stringify(text));
    assert.equal(ev.payload.recipient, gid, `${u.name}: recipient`);
    assert.equal(ev.payload.conversWith, gid, `${u.name}: conversWith`);
    assert.equal(ev.payload.timelineOf, u.id, `${u.name}: timelineOf`);
    assert.equal(ev.conversWith, gid, `${u.name}: topic segment`);
  }
  const { status } = await api('GET', `/groups/${gid}`, u1.jwt);
  assert.equal(status, 404, `GET /groups/${gid} after an inline-group send`);
});

scenario('archive: onConversationDeleted then onArchivedConversationAdded; a new message un-archives', ['direct'], async () => {
  await call('u2.archiveConversation(u1)', (cb) => u2.client.archiveConversation(u1.id, cb));
  const deleted = await u2.wait('conversationDeleted', (c, cw) => cw === u1.id, 'the removal of the conversation with u1');
  const archived = await u2.wait('archivedConversationAdded', (c, cw) => cw === u1.id, 'the archived conversation with u1');
  assert.ok(deleted.index < archived.index, 'conversations/…/clientdeleted must come before archived_conversations/…/clientadded');
  assert.equal(archived.payload.conversWith, u1.id, 'archived conversation: conversWith');
  assert.equal(archived.payload.archived, true, 'archived conversation: archived');
  assert.equal(archived.payload.last_message_text, S.direct.lastText, 'archived conversation: last_message_text');

  // The client's own HTTP reads (axios): the conversation moved to the archived list.
  const active = await call('u2.conversationDetail(u1)', (cb) => u2.client.conversationDetail(u1.id, cb));
  assert.equal(active, null, 'conversationDetail after archiving');
  const arch = await call('u2.archivedConversationDetail(u1)', (cb) => u2.client.archivedConversationDetail(u1.id, cb));
  assert.ok(arch, 'archivedConversationDetail after archiving returned nothing');
  assert.equal(arch.conversWith, u1.id, 'archivedConversationDetail: conversWith');
  const listed = await apiOk('GET', `/${u2.id}/conversations/${u1.id}`, u2.jwt);
  assert.deepEqual(listed.result, [], `GET /${u2.id}/conversations/${u1.id} after archiving`);
  await sleep(SETTLE);
  u1.none('conversationDeleted', (c, cw) => cw === u2.id, 'a removal of its conversation when the peer archived theirs');
  u1.none('archivedConversationAdded', () => true, 'an archived conversation when the peer archived theirs');

  // A new message un-archives it.
  const text = `un-archive ${RUN}`;
  await send(u1, text, u2.id, u2.fullname, 'direct');
  await u2.wait('archivedConversationDeleted', (c, cw) => cw === u1.id, 'the un-archiving of the conversation with u1');
  await u2.wait('messageAdded', (m) => m.text === text, JSON.stringify(text));
  const back = await call('u2.conversationDetail(u1)', (cb) => u2.client.conversationDetail(u1.id, cb));
  assert.ok(back, 'conversationDetail after the new message returned nothing');
  assert.equal(back.last_message_text, text, 'conversationDetail: last_message_text');
  const gone = await call('u2.archivedConversationDetail(u1)', (cb) => u2.client.archivedConversationDetail(u1.id, cb));
  assert.equal(gone, null, 'archivedConversationDetail after the new message');
});

scenario('read receipt: updateMessageStatus(200) by the reader -> onMessageUpdated status 250 at the sender', ['direct'], async () => {
  const text = `read me ${RUN}`;
  await send(u1, text, u2.id, u2.fullname, 'direct');
  const copy = await u2.wait('messageAdded', (m) => m.text === text, JSON.stringify(text));
  const id = copy.payload.message_id;
  await call('u2.updateMessageStatus(200)', (cb) => u2.client.updateMessageStatus(id, u1.id, 200, cb));

  const receipt = await u1.wait('messageUpdated', (m) => m.message_id === id, `the return receipt of ${id}`);
  assert.equal(receipt.payload.status, 250, 'return receipt: status');
  assert.equal(receipt.payload.timelineOf, u1.id, 'return receipt: timelineOf');
  assert.equal(receipt.conversWith, u2.id, 'return receipt: topic conversation segment');
  const topic = `apps/${APP}/users/${u1.id}/messages/${u2.id}/${id}/clientupdated`;
  assert.ok(u1.topics.includes(topic), `u1 got no publish on ${topic}`);

  await eventually(async () => {
    const mine = await apiOk('GET', `/${u1.id}/conversations/${u2.id}/messages`, u1.jwt);
    const m = mine.result.find((x) => x.message_id === id);
    assert.ok(m, `${id} is not in u1's timeline`);
    assert.equal(m.status, 250, "the sender's stored copy after the receipt: status");
  });
  await eventually(async () => {
    const theirs = await apiOk('GET', `/${u2.id}/conversations/${u1.id}/messages`, u2.jwt);
    const m = theirs.result.find((x) => x.message_id === id);
    assert.ok(m, `${id} is not in u2's timeline`);
    assert.equal(m.status, 200, "the reader's stored copy after reading: status");
  });
  await sleep(SETTLE);
  u3.none('messageUpdated', () => true, 'a read receipt of a conversation it is not in');
});

scenario('conversation read: updateConversationIsNew(false) -> onConversationUpdated for reader and peer', ['direct'], async () => {
  const text = `unread ${RUN}`;
  await send(u1, text, u2.id, u2.fullname, 'direct');
  const copy = await u2.wait('messageAdded', (m) => m.text === text, JSON.stringify(text));
  await eventually(async () => {
    const before = await apiOk('GET', `/${u2.id}/conversations/${u1.id}`, u2.jwt);
    assert.equal(before.result.length, 1, "u2's conversation with u1 before reading");
    assert.equal(before.result[0].is_new, true, 'before reading: is_new');
    assert.ok(before.result[0].unread_count >= 1, `before reading: unread_count = ${before.result[0].unread_count}`);
  });

  await call('u2.updateConversationIsNew(false)', (cb) => u2.client.updateConversationIsNew(u1.id, false, cb));
  const mine = await u2.wait('conversationUpdated', (c, cw) => cw === u1.id && c.is_new === false, 'its conversation with u1, read');
  assert.equal(mine.payload.timelineOf, u2.id, 'reader: timelineOf');
  assert.equal(mine.payload.conversWith, u1.id, 'reader: conversWith');
  assert.equal(mine.payload.unread_count, 0, 'reader: unread_count');
  assert.equal(typeof mine.payload.read_at, 'number', 'reader: read_at');
  const peer = await u1.wait('conversationUpdated', (c, cw) => cw === u2.id && c.peer_read_at !== undefined, 'the peer having read');
  assert.equal(peer.payload.timelineOf, u1.id, 'peer: timelineOf');
  assert.equal(peer.payload.conversWith, u2.id, 'peer: conversWith');
  assert.equal(typeof peer.payload.peer_read_at, 'number', 'peer: peer_read_at');

  await eventually(async () => {
    const after = await apiOk('GET', `/${u2.id}/conversations/${u1.id}`, u2.jwt);
    assert.equal(after.result[0].is_new, false, 'after reading: is_new');
    assert.equal(after.result[0].unread_count, 0, 'after reading: unread_count');
  });
  await eventually(async () => {
    const sent = await apiOk('GET', `/${u1.id}/conversations/${u2.id}/messages`, u1.jwt);
    const m = sent.result.find((x) => x.message_id === copy.payload.message_id);
    assert.ok(m, "the read message is not in the sender's timeline");
    assert.equal(m.status, 250, "the sender's copy of a message read with the conversation: status");
  });
});

scenario('close: every client disconnects cleanly', ['connect'], async () => {
  for (const u of USERS) {
    await call(`${u.name}.close`, (cb) => u.client.close(() => cb(null)));
    assert.equal(u.client.connected, false, `${u.name}: client.connected after close`);
  }
});

// ---------------------------------------------------------------------------------------------
// Runner

async function main() {
  const started = Date.now();
  const status = new Map(); // scenario name prefix (before ':') -> 'ok' | 'FAIL' | 'skip'
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const s of scenarios) {
    const key = s.name.split(':')[0];
    const missing = s.needs.filter((n) => status.get(n) !== 'ok');
    if (missing.length > 0) {
      status.set(key, 'skip');
      skipped += 1;
      out(`skip ${s.name} (needs: ${missing.join(', ')})`);
      continue;
    }
    for (const u of USERS) u.since = u.events.length;
    const noiseMark = noise.length;
    const t0 = Date.now();
    try {
      await s.fn();
      status.set(key, 'ok');
      passed += 1;
      out(`ok   ${s.name} (${Date.now() - t0} ms)`);
    } catch (e) {
      status.set(key, 'FAIL');
      failed += 1;
      out(`FAIL ${s.name} (${Date.now() - t0} ms)`);
      out(`     ${e && e.message ? e.message.split('\n').join('\n     ') : String(e)}`);
      const tail = noise.slice(Math.max(noiseMark, noise.length - 15));
      if (tail.length > 0) {
        out('     client output (tail):');
        for (const line of tail) out(`     | ${line}`);
      }
    }
  }
  for (const u of USERS) {
    if (u.client && u.client.client) u.client.client.end(true);
  }
  out(
    `chat21-client: ${passed} passed, ${failed} failed, ${skipped} skipped ` +
      `(${Date.now() - started} ms; chat21client.js of @chat21/chat21-server@${PINS.chat21_server}, ` +
      `http ${HTTP}, mqtt ${MQTT_WS})`
  );
  return failed === 0 && skipped === 0 ? 0 : 1;
}

const watchdog = setTimeout(() => {
  out(`FAIL the whole run took longer than ${RUN_LIMIT} ms`);
  process.exit(1);
}, RUN_LIMIT);
watchdog.unref();

main().then(
  (code) => process.exit(code),
  (e) => {
    out(`FAIL harness error: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
);
