// The console's MQTT client (local/src/console/mqtt.js) against MQTT 3.1.1's byte layouts and
// a scripted WebSocket: packets split or joined across WebSocket messages, CONNECT's fields,
// QoS 1 acknowledgements both ways, SUBACK refusals, CONNACK refusals (no retry), reconnection
// backoff, and a connection whose PINGRESP never comes. Run with `node --test` (Node 20).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');

require(path.join(__dirname, '..', '..', 'src', 'console', 'mqtt.js'));
const { MqttClient, MqttPacketReader } = globalThis;

const bytes = (...parts) => Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? [...Buffer.from(p)] : p)));
const str = (s) => [s.length >> 8, s.length & 0xff, ...Buffer.from(s)];

/** A WebSocket whose far end the test plays. */
class ScriptedSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.all.push(this);
    setImmediate(() => {
      this.readyState = ScriptedSocket.OPEN;
      this.onopen && this.onopen();
    });
  }
  send(data) {
    this.sent.push(Uint8Array.from(data));
  }
  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setImmediate(() => this.onclose && this.onclose());
  }
  receive(...packets) {
    const data = Buffer.concat(packets.map((p) => Buffer.from(p)));
    this.onmessage({ data: data.buffer.slice(data.byteOffset, data.byteOffset + data.length) });
  }
}
ScriptedSocket.OPEN = 1;
ScriptedSocket.all = [];
globalThis.WebSocket = ScriptedSocket;

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function until(what, condition, ms = 2000) {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(5);
  }
}

function client(extra = {}) {
  const states = [];
  const received = [];
  const c = new MqttClient(Object.assign({
    url: 'ws://127.0.0.1:1/ws',
    clientId: 'c1',
    username: 'JWT',
    password: async () => 'pw',
    keepalive: 60,
    will: { topic: 't', payload: 'p', qos: 1, retain: true },
    onState: (s, d) => states.push([s, d]),
    onMessage: (topic, payload, meta) => received.push([topic, Buffer.from(payload).toString(), meta]),
    minBackoffMs: 40,
    maxBackoffMs: 1000,
  }, extra));
  return { c, states, received };
}

async function connected(extra) {
  ScriptedSocket.all = [];
  const made = client(extra);
  made.c.start();
  await until('CONNECT', () => ScriptedSocket.all[0] && ScriptedSocket.all[0].sent.length === 1);
  made.ws = ScriptedSocket.all[0];
  made.ws.receive([0x20, 2, 0, 0]);
  assert.equal(made.c.connected, true);
  return made;
}

test('packets split at any byte, or joined in one message, come out whole', { timeout: 5000 }, () => {
  const payload = 'x'.repeat(300); // a two-byte remaining length
  const publish = bytes([0x30, 0xb1, 0x02], str('a/b'), payload);
  assert.equal(publish.length, 3 + 305);
  for (let cut = 1; cut < publish.length; cut++) {
    const reader = new MqttPacketReader();
    const first = reader.push(publish.slice(0, cut));
    const second = reader.push(publish.slice(cut));
    assert.equal(first.length + second.length, 1, `cut at ${cut}`);
    const p = [...first, ...second][0];
    assert.equal(p.type, 3);
    assert.equal(p.body.length, 305);
  }
  const joined = new MqttPacketReader().push(bytes([0xd0, 0], [0x90, 3, 0, 7, 1], [0xd0, 0]));
  assert.deepEqual(joined.map((p) => p.type), [13, 9, 13]);
  assert.throws(() => new MqttPacketReader().push(bytes([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), /remaining length/);
});

test('CONNECT carries the client id, the will, the user name and the JWT as password', { timeout: 5000 }, async () => {
  const { c, ws } = await connected();
  assert.deepEqual(ws.protocols, ['mqtt']);
  const expected = bytes([0x10, 29], str('MQTT'), [4, 0xee, 0, 60], str('c1'), str('t'), str('p'), str('JWT'), str('pw'));
  assert.deepEqual(ws.sent[0], expected);
  c.stop();
  // A clean stop says DISCONNECT (so the broker does not publish the will).
  assert.deepEqual(ws.sent.at(-1), bytes([0xe0, 0]));
});

test('QoS 1 both ways: deliveries are acknowledged, publishes wait for PUBACK', { timeout: 5000 }, async () => {
  const { c, ws, received } = await connected();
  ws.receive(bytes([0x32, 2 + 3 + 2 + 2], str('a/b'), [0x12, 0x34], '{}'));
  assert.deepEqual(received, [['a/b', '{}', { qos: 1, retain: false }]]);
  assert.deepEqual(ws.sent.at(-1), bytes([0x40, 2, 0x12, 0x34]));
  let acked = false;
  const published = c.publish('p/q', 'hi', { qos: 1, retain: true }).then(() => (acked = true));
  const sent = ws.sent.at(-1);
  assert.equal(sent[0], 0x33); // PUBLISH, QoS 1, retain
  const id = [sent[2 + 5], sent[2 + 6]];
  await tick(10);
  assert.equal(acked, false);
  ws.receive([0x40, 2, ...id]);
  await published;
  assert.equal(acked, true);
  c.stop();
});

test('a subscription answers its granted codes (0x80 = refused)', { timeout: 5000 }, async () => {
  const { c, ws } = await connected();
  const answer = c.subscribe(['apps/a/users/u/#', 'apps/a/users/v/#'], 1);
  const sent = ws.sent.at(-1);
  assert.equal(sent[0], 0x82);
  ws.receive([0x90, 4, sent[2], sent[3], 1, 0x80]);
  assert.deepEqual(await answer, [1, 0x80]);
  c.stop();
});

test('a refused CONNECT stops the client: no retry with the same token', { timeout: 5000 }, async () => {
  ScriptedSocket.all = [];
  const { c, states } = client();
  c.start();
  await until('CONNECT', () => ScriptedSocket.all[0] && ScriptedSocket.all[0].sent.length === 1);
  ScriptedSocket.all[0].receive([0x20, 2, 0, 5]);
  await tick(200);
  assert.equal(ScriptedSocket.all.length, 1);
  assert.deepEqual(states.at(-1), ['refused', { code: 5, reason: 'not authorized' }]);
  assert.equal(c.running, false);
});

test('a lost connection is retried with growing waits, which reset once connected', { timeout: 5000 }, async () => {
  ScriptedSocket.all = [];
  const { c, states } = client();
  c.start();
  // Three connections closed before their CONNACK: the waits double (40 ms, 80 ms, 160 ms, ±50 %).
  for (let i = 1; i <= 3; i++) {
    await until(`connection ${i}`, () => ScriptedSocket.all.length === i && ScriptedSocket.all[i - 1].onclose);
    ScriptedSocket.all[i - 1].close();
  }
  await until('the fourth connection', () => ScriptedSocket.all.length === 4);
  const waits = states.filter(([s]) => s === 'waiting').map(([, d]) => d.delayMs);
  assert.equal(waits.length, 3);
  assert.ok(waits[0] >= 20 && waits[0] <= 40, `${waits}`);
  assert.ok(waits[1] >= 40 && waits[1] <= 80, `${waits}`);
  assert.ok(waits[2] >= 80 && waits[2] <= 160, `${waits}`);
  await until('CONNECT', () => ScriptedSocket.all[3].sent.length === 1);
  ScriptedSocket.all[3].receive([0x20, 2, 0, 0]);
  ScriptedSocket.all[3].close();
  await until('the next wait', () => states.filter(([s]) => s === 'waiting').length === 4);
  const again = states.filter(([s]) => s === 'waiting').at(-1)[1].delayMs;
  assert.ok(again <= 40, `after a connection the wait starts over: ${again}`);
  c.stop();
});

test('PINGREQ every half keep-alive; no PINGRESP by the next one drops the connection', { timeout: 5000 }, async () => {
  const { c, ws, states } = await connected({ keepalive: 0.1 });
  await until('a PINGREQ', () => ws.sent.some((p) => p[0] === 0xc0));
  ws.receive([0xd0, 0]);
  await tick(70);
  assert.equal(ws.readyState, ScriptedSocket.OPEN, 'answered: kept');
  await until('the connection dropped', () => ws.readyState === 3, 1000);
  await until('a reconnect planned', () => states.some(([s]) => s === 'waiting'));
  c.stop();
});
