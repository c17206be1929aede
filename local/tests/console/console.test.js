// The web console of chat21-local in a real browser: Debian's headless Chromium, driven over
// the DevTools protocol by playwright-core, two pages as two users (two browser contexts, so
// nothing is shared but the server). One line per step, then "N passed, N failed"; a failed
// step stops the run (the later ones build on it), prints what each page showed (its text,
// console errors) and saves screenshots. Every wait is bounded.
//
// CONSOLE_HTTP      chat21-local's base URL, e.g. http://127.0.0.1:8004 (required; the server
//                   must run on its development key: the pages mint their tokens)
// CONSOLE_MQTT_WS   its MQTT over WebSocket URL (required: every WebSocket must go there)
// CONSOLE_TEST_DIR  where setup.sh installed playwright-core (required)
// CONSOLE_OUT       where screenshots go (default target/console)
// CONSOLE_TIMEOUT_MS  how long each awaited change may take (default 10000)
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const HTTP = process.env.CONSOLE_HTTP;
const MQTT_WS = process.env.CONSOLE_MQTT_WS;
const CACHE = process.env.CONSOLE_TEST_DIR;
if (!HTTP || !MQTT_WS || !CACHE) {
  console.error('console.test.js: set CONSOLE_HTTP, CONSOLE_MQTT_WS and CONSOLE_TEST_DIR (see scripts/console-test)');
  process.exit(2);
}
const OUT = process.env.CONSOLE_OUT || path.join(__dirname, '..', '..', '..', 'target', 'console');
const TIMEOUT = Number(process.env.CONSOLE_TIMEOUT_MS || 10000);
const CHROMIUM = '/usr/bin/chromium';
// What Chromium needs on this kind of machine (root, no GPU, a closed network).
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const { chromium } = require(require.resolve('playwright-core', { paths: [CACHE] }));

const run = Date.now().toString(36);
const ALICE = `alice-${run}`;
const BOB = `bob-${run}`;
const CAROL = `carol-${run}`;
const APP = 'default';

let passed = 0;
let failed = 0;
const users = [];
const started = Date.now();

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** The API, as a test-side client: tokens from the server's own console route. */
async function api(method, pathName, user, body) {
  const minted = await fetch(`${HTTP}/console/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user_id: user, app_id: APP }),
  }).then((r) => r.json());
  const response = await fetch(HTTP + pathName, {
    method,
    headers: Object.assign({ Authorization: minted.token }, body ? { 'Content-Type': 'application/json' } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: await response.json() };
}

async function newUser(browser, label) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  const page = await context.newPage();
  const user = { label, context, page, errors: [], requests: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') user.errors.push(m.text());
  });
  page.on('pageerror', (e) => user.errors.push(`uncaught: ${e.message}`));
  page.on('request', (r) => user.requests.push(r.url()));
  page.on('websocket', (ws) => user.requests.push(ws.url()));
  page.setDefaultTimeout(TIMEOUT);
  users.push(user);
  return user;
}

async function dump() {
  fs.mkdirSync(OUT, { recursive: true });
  for (const u of users) {
    let text = '(no text)';
    try {
      text = await u.page.evaluate(() => document.body.innerText);
      await u.page.screenshot({ path: path.join(OUT, `failure-${u.label}.png`), fullPage: true });
    } catch (e) {
      text = `(the page could not be read: ${e.message})`;
    }
    console.log(`--- ${u.label}'s page showed:\n${text.slice(0, 4000)}`);
    console.log(`--- ${u.label}'s console errors: ${u.errors.length ? '\n' + u.errors.join('\n') : 'none'}`);
  }
  console.log(`--- screenshots: ${OUT}/failure-*.png`);
}

async function step(name, body) {
  const t0 = Date.now();
  try {
    await body();
    passed += 1;
    console.log(`ok - ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed += 1;
    console.log(`not ok - ${name}: ${e.message.split('\n')[0]}`);
    throw e;
  }
}

async function signIn(user, id, name) {
  const { page } = user;
  await page.goto(`${HTTP}/console`);
  await page.fill('#user-id', id);
  await page.fill('#full-name', name);
  await page.click('#sign-in-button');
  await page.waitForSelector('#connection-status[data-state="connected"]');
  // Set once: still there at the end means the page was never reloaded.
  await page.evaluate(() => (window.__notReloaded = true));
}

const item = (list, id) => `#${list} li[data-conversation="${id}"]`;

/** Waits until `fn` (run in the page) returns a truthy value; bounded. */
function until(page, fn, arg) {
  return page.waitForFunction(fn, arg, { timeout: TIMEOUT, polling: 50 });
}

/**
 * Puts the test between a page and the broker (the page still talks to chat21-local's real
 * WebSocket): records every MQTT frame, and can drop the connections, refuse the next ones, or
 * swallow PINGRESPs.
 */
async function relay(page) {
  const wire = {
    sent: [], received: [], connections: [], sockets: [], refuse: 0, droppedAt: 0,
    swallowPingResponses: false,
    toPage(frame) {
      wire.sockets.at(-1).send(frame);
    },
    dropAll() {
      wire.droppedAt = Date.now();
      for (const ws of wire.sockets.splice(0)) ws.close();
    },
  };
  await page.routeWebSocket(MQTT_WS, (ws) => {
    wire.connections.push(Date.now());
    if (wire.refuse > 0) {
      wire.refuse -= 1;
      ws.close();
      return;
    }
    const server = ws.connectToServer();
    wire.sockets.push(ws);
    ws.onMessage((m) => {
      wire.sent.push(Buffer.from(m));
      server.send(m);
    });
    server.onMessage((m) => {
      const frame = Buffer.from(m);
      wire.received.push(frame);
      if (!(wire.swallowPingResponses && frame[0] === 0xd0)) ws.send(m);
    });
  });
  return wire;
}

/** A QoS 0 PUBLISH of `payload` (JSON) on `topic`, as a broker sends it. */
function publishFrame(topic, payload) {
  const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), Buffer.from(topic),
    Buffer.from(JSON.stringify(payload))]);
  const length = [];
  let n = body.length;
  do {
    length.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x30, ...length]), body]);
}

/** The fields of an MQTT 3.1.1 CONNECT (remaining length under 16 KiB). */
function connectFields(frame) {
  let at = frame[1] & 0x80 ? 3 : 2;
  const string = () => {
    const n = frame.readUInt16BE(at);
    const s = frame.subarray(at + 2, at + 2 + n).toString();
    at += 2 + n;
    return s;
  };
  const protocol = string();
  const [level, flags] = [frame[at], frame[at + 1]];
  const keepalive = frame.readUInt16BE(at + 2);
  at += 4;
  const fields = { protocol, level, flags, keepalive, clientId: string() };
  if (flags & 0x04) Object.assign(fields, { willTopic: string(), willPayload: string() });
  if (flags & 0x80) fields.username = string();
  if (flags & 0x40) fields.password = string();
  return fields;
}

async function stats(page) {
  return page.evaluate(() => ({
    listLoads: window.chat21Console.apiStats.listLoads,
    mqtt: window.chat21Console.stats.mqttMessages,
  }));
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30000 });
  try {
    await scenario(browser);
  } catch (e) {
    console.log(`\n${e.stack || e}`);
    await dump().catch((d) => console.log(`(dump failed: ${d.message})`));
    if (!failed) failed = 1;
  } finally {
    await browser.close();
  }
}

async function scenario(browser) {
  const alice = await newUser(browser, 'alice');
  const bob = await newUser(browser, 'bob');
  const stranger = await newUser(browser, 'stranger');
  let groupId;
  let directId;

  await step('the page loads with no request outside the server, and says how to sign in', async () => {
    const { page } = stranger;
    const response = await page.goto(`${HTTP}/console`);
    check(response.status() === 200, `GET /console answered ${response.status()}`);
    check((await page.title()) === 'Chat21 console', 'title');
    check(await page.isVisible('#dev-hint'), 'the development-key hint is shown');
    check(await page.inputValue('#api-url') === HTTP, `API URL defaults to the page's origin: ${await page.inputValue('#api-url')}`);
    check(await page.inputValue('#mqtt-url') === MQTT_WS, `MQTT URL defaults to the server's port: ${await page.inputValue('#mqtt-url')}`);
    for (const landmark of ['banner', 'main']) {
      check(await page.getByRole(landmark).count() === 1, `one visible ${landmark} landmark`);
    }
    check(await page.getByLabel('User id', { exact: true }).count() === 1, 'the user id field has a label');
  });

  await step('sign-in refusals are shown: a bad user id, a non-token, a forged token', async () => {
    const { page } = stranger;
    await page.fill('#user-id', 'a/b');
    await page.click('#sign-in-button');
    await page.waitForSelector('#sign-in-error:has-text("forbidden character")');
    await page.fill('#token', 'not-a-token');
    await page.click('#sign-in-button');
    await page.waitForSelector('#sign-in-error:has-text("not a Chat21 token")');
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const signed = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'mallory', app_id: APP, exp: Math.floor(Date.now() / 1000) + 600 })}`;
    const forged = `${signed}.${crypto.createHmac('sha256', 'not the server key').update(signed).digest('base64url')}`;
    await page.fill('#token', forged);
    await page.click('#sign-in-button');
    await page.waitForSelector('#sign-in-error:has-text("signature is invalid")');
    check(await page.isVisible('#sign-in'), 'still on the sign-in form');
    check(await page.getAttribute('#connection-status', 'data-state') === 'signed-out', 'never connected');
  });

  await step('alice and bob sign in (minted tokens) and go live over MQTT', async () => {
    await Promise.all([signIn(alice, ALICE, 'Alice'), signIn(bob, BOB, 'Bob')]);
    check((await alice.page.textContent('#whoami')).includes(ALICE), 'alice is named');
  });

  let bobBefore;
  await step('alice creates a group with bob and sends to it (Enter sends)', async () => {
    const { page } = alice;
    bobBefore = await stats(bob.page);
    await page.fill('#new-group-name', 'Launch team');
    await page.fill('#new-group-members', BOB);
    await page.click('#new-group-create');
    await page.waitForSelector('#group-members li[data-member]');
    groupId = await page.evaluate(() => document.querySelector('#conversations [aria-current="true"]')
      ?.closest('li').dataset.conversation || document.getElementById('conversation-kind').textContent.replace(/^Group /, ''));
    check(groupId && groupId.startsWith('group-'), `a group id: ${groupId}`);
    const members = await page.$$eval('#group-members li', (lis) => lis.map((li) => li.dataset.member).sort());
    check(JSON.stringify(members) === JSON.stringify([ALICE, BOB].sort()), `members ${members}`);
    await page.fill('#message-text', 'Hello team!');
    await page.press('#message-text', 'Enter');
    await page.waitForSelector('#timeline li.mine:has-text("Hello team!")');
    check(await page.inputValue('#message-text') === '', 'the box is cleared');
  });

  await step('bob sees the group live, without a reload, with its unread count', async () => {
    const { page } = bob;
    const before = bobBefore;
    await page.waitForSelector(`${item('conversations', groupId)} .last:has-text("Hello team!")`);
    const server = await api('GET', `/api/${APP}/${BOB}/conversations/${groupId}`, BOB);
    const unread = server.body.result[0].unread_count;
    check(unread >= 1, `the server counts ${unread} unread`);
    await until(page, ([sel, n]) => document.querySelector(sel)?.dataset.unread === String(n),
      [item('conversations', groupId), unread]);
    check(await page.isVisible(`${item('conversations', groupId)} .unread-count`), 'the count is shown');
    const after = await stats(page);
    check(after.listLoads === before.listLoads, `no list was reloaded over HTTP (${before.listLoads} → ${after.listLoads})`);
    check(after.mqtt > before.mqtt, 'it came over MQTT');
    check(await page.evaluate(() => window.__notReloaded === true), 'the page was not reloaded');
  });

  await step('bob opens the group from the keyboard and marks it read: the count clears', async () => {
    const { page } = bob;
    await page.focus(`${item('conversations', groupId)} button`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#timeline li.theirs:has-text("Hello team!")');
    await page.waitForSelector(`#group-members li[data-member="${ALICE}"]`);
    await page.click('#mark-read');
    await until(page, (sel) => document.querySelector(sel)?.dataset.unread === '0', item('conversations', groupId));
    check(!(await page.isVisible(`${item('conversations', groupId)} .unread-count`)), 'no count shown');
    const server = await api('GET', `/api/${APP}/${BOB}/conversations/${groupId}`, BOB);
    check(server.body.result[0].unread_count === 0, `the server agrees: ${JSON.stringify(server.body.result[0].unread_count)}`);
  });

  await step('alice adds and removes carol: bob\'s member list follows live', async () => {
    await alice.page.fill('#add-member-id', CAROL);
    await alice.page.click('#add-member-button');
    await alice.page.waitForSelector(`#group-members li[data-member="${CAROL}"]`);
    await bob.page.waitForSelector(`#group-members li[data-member="${CAROL}"]`);
    await bob.page.waitForSelector(`#timeline li.system:has-text("${CAROL} joined the group")`);
    await alice.page.click(`#group-members li[data-member="${CAROL}"] button`);
    await alice.page.waitForSelector(`#group-members li[data-member="${CAROL}"]`, { state: 'detached' });
    await bob.page.waitForSelector(`#group-members li[data-member="${CAROL}"]`, { state: 'detached' });
    await bob.page.waitForSelector(`#timeline li.system:has-text("${CAROL} left the group")`);
    const group = await api('GET', `/api/${APP}/groups/${groupId}`, ALICE);
    check(!(CAROL in group.body.result.members), 'the server agrees carol left');
  });

  await step('alice sends bob a direct message: bob gets it live, unread', async () => {
    await alice.page.fill('#new-direct-user', BOB);
    await alice.page.click('#new-direct-open');
    await alice.page.fill('#message-text', 'Hi Bob, did you read this?');
    await alice.page.click('#send');
    const mine = alice.page.locator('#timeline li.mine', { hasText: 'did you read this?' });
    await mine.waitFor();
    directId = await mine.getAttribute('data-message-id');
    check(directId, 'the message has an id');
    await bob.page.waitForSelector(`${item('conversations', ALICE)}[data-unread="1"]`);
  });

  await step('bob reads it: alice\'s page shows the read receipt (status 250) live', async () => {
    const before = await stats(alice.page);
    await bob.page.click(`${item('conversations', ALICE)} button`);
    await bob.page.waitForSelector(`#timeline li.theirs[data-message-id="${directId}"]`);
    await bob.page.click('#mark-read');
    await bob.page.waitForSelector(`${item('conversations', ALICE)}[data-unread="0"]`);
    await alice.page.waitForSelector(`#timeline li[data-message-id="${directId}"] .status[data-status="250"]`);
    check((await alice.page.textContent(`#timeline li[data-message-id="${directId}"] .status`)) === 'read', 'labelled read');
    const after = await stats(alice.page);
    check(after.listLoads === before.listLoads, 'alice\'s page reloaded nothing');
    const stored = await api('GET', `/api/${APP}/${ALICE}/conversations/${BOB}/messages`, ALICE);
    const copy = stored.body.result.find((m) => m.message_id === directId);
    check(copy && copy.status === 250, `the server stores 250: ${copy && copy.status}`);
  });

  await step('bob archives the conversation; alice\'s next message brings it back, unread', async () => {
    await bob.page.click('#archive');
    await bob.page.waitForSelector(item('archived-conversations', ALICE));
    await bob.page.waitForSelector(item('conversations', ALICE), { state: 'detached' });
    await alice.page.fill('#message-text', 'Are you there?');
    await alice.page.press('#message-text', 'Enter');
    await bob.page.waitForSelector(item('archived-conversations', ALICE), { state: 'detached' });
    await bob.page.waitForSelector(`${item('conversations', ALICE)}[data-unread="1"]`);
    await bob.page.waitForSelector('#timeline li.theirs:has-text("Are you there?")');
  });

  await step('on the wire: CONNECT with the JWT and a will, one subscription, presence, keep-alive', async () => {
    const carol = await newUser(browser, 'carol');
    const wire = await relay(carol.page);
    await carol.page.goto(`${HTTP}/console?keepalive=2`);
    await carol.page.fill('#user-id', CAROL);
    await carol.page.click('#sign-in-button');
    await carol.page.waitForSelector('#connection-status[data-state="connected"]');
    const connect = wire.sent.find((f) => f[0] === 0x10);
    const fields = connectFields(connect);
    check(fields.protocol === 'MQTT' && fields.level === 4, `MQTT 3.1.1: ${fields.protocol} ${fields.level}`);
    check(fields.flags === 0xee, `user name, password, retained QoS 1 will, clean session: ${fields.flags.toString(16)}`);
    check(fields.keepalive === 2, `keep-alive from ?keepalive=: ${fields.keepalive}`);
    const presence = `apps/${APP}/users/${CAROL}/presence/${fields.clientId}`;
    check(fields.willTopic === presence && fields.willPayload === '{"disconnected":true}', `will ${fields.willTopic} ${fields.willPayload}`);
    check(fields.username === 'JWT', 'user name JWT');
    const claims = JSON.parse(Buffer.from(fields.password.split('.')[1], 'base64url'));
    check(claims.sub === CAROL && claims.app_id === APP, `the password is carol's JWT: ${JSON.stringify(claims)}`);
    const subscribe = wire.sent.find((f) => f[0] === 0x82);
    const filter = `apps/${APP}/users/${CAROL}/#`;
    check(subscribe && subscribe.includes(Buffer.from(filter)) && subscribe.at(-1) === 1, 'SUBSCRIBE to her tree at QoS 1');
    const online = wire.sent.find((f) => f[0] === 0x33 && f.includes(Buffer.from(presence)));
    check(online && online.includes(Buffer.from('{"connected":true}')), 'a retained QoS 1 presence publish');
    const pings = () => wire.sent.filter((f) => f[0] === 0xc0).length;
    const t0 = Date.now();
    while (pings() < 2 && Date.now() - t0 < TIMEOUT) await new Promise((r) => setTimeout(r, 50));
    check(pings() >= 2, `PINGREQ every second with ?keepalive=2: ${pings()}`);
    check(wire.received.some((f) => f[0] === 0xd0), 'PINGRESP received');
    check(await carol.page.getAttribute('#connection-status', 'data-state') === 'connected', 'still connected');
    users.carol = { user: carol, wire };
  });

  await step('carol\'s connection drops: the page retries with backoff, then resyncs what it missed', async () => {
    const { user: carol, wire } = users.carol;
    const connects = () => wire.connections.length;
    wire.refuse = 1; // the first retry is closed at once: the second waits longer
    wire.dropAll();
    await carol.page.waitForSelector('#connection-status[data-state="waiting"]');
    // Sent while carol is offline: only the resync over HTTP can show it.
    const sent = await api('POST', `/api/${APP}/messages`, ALICE,
      { sender_fullname: 'Alice', recipient_id: CAROL, recipient_fullname: CAROL, text: 'Sent while you were away' });
    check(sent.status === 200, `sent: ${sent.status}`);
    await carol.page.waitForSelector('#connection-status[data-state="connected"]', { timeout: TIMEOUT });
    check(connects() === 3, `three connections (the first, a refused retry, the one that held): ${connects()}`);
    const [drop, first, second] = [wire.droppedAt, ...wire.connections.slice(1)];
    const waits = [first - drop, second - first];
    check(waits[0] >= 400 && waits[1] >= 900 && waits[1] > waits[0] * 0.9, `backoff waits grow: ${waits} ms`);
    await carol.page.waitForSelector(`${item('conversations', ALICE)}[data-unread="1"] .last:has-text("while you were away")`);
  });

  await step('carol\'s broker stops answering PINGREQ: the page notices and reconnects', async () => {
    const { user: carol, wire } = users.carol;
    const before = wire.connections.length;
    wire.swallowPingResponses = true;
    await carol.page.waitForSelector('#connection-status[data-state="waiting"]', { timeout: TIMEOUT });
    wire.swallowPingResponses = false;
    await carol.page.waitForSelector('#connection-status[data-state="connected"]', { timeout: TIMEOUT });
    check(wire.connections.length === before + 1, `one new connection: ${wire.connections.length - before}`);
    await alice.page.fill('#new-direct-user', CAROL);
    await alice.page.click('#new-direct-open');
    await alice.page.fill('#message-text', 'Welcome back');
    await alice.page.press('#message-text', 'Enter');
    await carol.page.waitForSelector(`${item('conversations', ALICE)} .last:has-text("Welcome back")`);
  });

  await step('typing (REALTIME.md\'s typings topic, played as the broker sends it): "… is typing" comes and goes', async () => {
    const { user: carol, wire } = users.carol;
    await carol.page.click(`${item('conversations', ALICE)} button`);
    await carol.page.waitForSelector('#timeline li.theirs:has-text("Welcome back")');
    const topic = `apps/${APP}/users/${CAROL}/typings/${ALICE}/clientupdated`;
    const typing = (on) => ({ writer_id: ALICE, convers_with: ALICE, typing: on, timestamp: Date.now() });
    wire.toPage(publishFrame(topic, typing(true)));
    await carol.page.waitForSelector(`#typing:has-text("${ALICE} is typing")`);
    wire.toPage(publishFrame(topic, typing(false)));
    await until(carol.page, () => document.getElementById('typing').textContent === '');
    check(carol.errors.length === 0, `carol's console errors: ${carol.errors.join(' | ')}`);
    // Back to bob's conversation for alice's screenshot.
    await alice.page.click(`${item('conversations', BOB)} button`);
    await alice.page.waitForSelector(`#timeline li[data-message-id="${directId}"]`);
  });

  await step('a pasted token signs in its user; older messages page in; signing out closes the session', async () => {
    const { page } = stranger;
    const DAVE = `dave-${run}`;
    const minted = await fetch(`${HTTP}/console/token`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user_id: DAVE, app_id: APP }),
    }).then((r) => r.json());
    // 60 messages: one page of 50, then the 10 older ones.
    for (let i = 0; i < 60; i++) {
      const sent = await api('POST', `/api/${APP}/messages`, ALICE,
        { sender_fullname: 'Alice', recipient_id: DAVE, recipient_fullname: DAVE, text: `note ${i}` });
      check(sent.status === 200, `send ${i}: ${sent.status}`);
    }
    await page.fill('#user-id', '');
    await page.fill('#token', minted.token);
    await page.click('#sign-in-button');
    await page.waitForSelector('#connection-status[data-state="connected"]');
    check((await page.textContent('#whoami')).includes(DAVE), 'signed in as the token\'s sub');
    check(await page.inputValue('#token') === '', 'the token is not left in the form');
    await page.waitForSelector(`${item('conversations', ALICE)}[data-unread="60"]`);
    await page.click(`${item('conversations', ALICE)} button`);
    await until(page, () => document.querySelectorAll('#timeline li').length === 50);
    const texts = () => page.$$eval('#timeline li .text', (t) => t.map((x) => x.textContent));
    check((await texts())[49] === 'note 59', 'newest at the bottom');
    await page.click('#load-older');
    await until(page, () => document.querySelectorAll('#timeline li').length === 60);
    const all = await texts();
    check(all.every((t, i) => t === `note ${i}`), `in order, oldest first: ${all.slice(0, 3)} … ${all.slice(-2)}`);
    check(await page.isHidden('#load-older'), 'nothing older');
    await page.click('#sign-out');
    await page.waitForSelector('#sign-in', { state: 'visible' });
    check(await page.getAttribute('#connection-status', 'data-state') === 'signed-out', 'signed out');
    check(await page.$$eval('#conversations li', (l) => l.length) === 0, 'nothing of dave\'s is left on the page');
  });

  await step('screenshots of both pages; no console errors; never reloaded', async () => {
    fs.mkdirSync(OUT, { recursive: true });
    // Bob reads the last message too, so alice's page ends with both receipts.
    await bob.page.click('#mark-read');
    await alice.page.waitForFunction(() => document.querySelectorAll('#timeline li.mine .status[data-status="250"]').length === 2,
      null, { timeout: TIMEOUT });
    // And answers in the group, where his page ends (its members beside the timeline).
    await bob.page.click(`${item('conversations', groupId)} button`);
    await bob.page.waitForSelector(`#group-members li[data-member="${ALICE}"]`);
    await bob.page.fill('#message-text', 'On it, shipping today.');
    await bob.page.press('#message-text', 'Enter');
    await bob.page.waitForSelector('#timeline li.mine:has-text("shipping today")');
    await alice.page.screenshot({ path: path.join(OUT, 'alice.png') });
    await bob.page.screenshot({ path: path.join(OUT, 'bob.png') });
    for (const u of [alice, bob]) {
      check(u.errors.length === 0, `${u.label}'s console errors: ${u.errors.join(' | ')}`);
      check(await u.page.evaluate(() => window.__notReloaded === true), `${u.label}'s page was reloaded`);
      const outside = u.requests.filter((url) => !url.startsWith(HTTP + '/') && url !== MQTT_WS);
      check(outside.length === 0, `${u.label} requested ${outside.join(', ')}`);
    }
  });
}

main()
  .catch((e) => {
    console.log(`\n${e.stack || e}`);
    if (!failed) failed = 1;
  })
  .finally(() => {
    console.log(`\nconsole (browser) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed ? 1 : 0;
  });
