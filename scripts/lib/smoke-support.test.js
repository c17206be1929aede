// Unit tests of scripts/smoke's own checks (run by scripts/smoke-local with `node --test`): a
// smoke that cannot fail proves nothing, so its signature check, tokens, scrubbing and
// percentiles are tested on the cases that must fail as well as the ones that must pass.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const test = require('node:test');
const S = require('./smoke-support.js');

const raw = JSON.stringify({ event_type: 'message-sent', app_id: 'tilechat', message_id: 'm1' });
const now = () => String(Math.floor(Date.now() / 1000));
const whsec = () => `whsec_${crypto.randomBytes(32).toString('base64')}`;
function sign(secret, id, ts, body) {
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret);
  return `v1,${crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64')}`;
}
const headers = (signature, ts = now()) => ({ 'webhook-id': 'msg_1', 'webhook-timestamp': ts, 'webhook-signature': signature });

test('a POST signed with the endpoint secret verifies (whsec_ and plain secrets, among other signatures)', () => {
  const secret = whsec();
  const ts = now();
  assert.equal(S.signatureProblem(secret, headers(sign(secret, 'msg_1', ts, raw), ts), raw), null);
  assert.equal(S.signatureProblem(secret, headers(`v1,AAAA ${sign(secret, 'msg_1', ts, raw)}`, ts), raw), null);
  const plain = 'a-plain-secret-of-32-characters!';
  assert.equal(S.signatureProblem(plain, headers(sign(plain, 'msg_1', ts, raw), ts), raw), null);
});

test('a POST signed with another secret, over another body or id, stale, or unsigned does not verify', () => {
  const secret = whsec();
  const ts = now();
  assert.match(S.signatureProblem(secret, headers(sign(whsec(), 'msg_1', ts, raw), ts), raw), /does not verify/);
  assert.match(S.signatureProblem(secret, headers(sign(secret, 'msg_1', ts, raw), ts), `${raw} `), /does not verify/);
  assert.match(S.signatureProblem(secret, headers(sign(secret, 'msg_2', ts, raw), ts), raw), /does not verify/);
  assert.match(S.signatureProblem(secret, headers(sign(secret, 'msg_1', ts, raw).replace('v1,', 'v2,'), ts), raw), /does not verify/);
  const old = String(Number(ts) - 301);
  assert.match(S.signatureProblem(secret, headers(sign(secret, 'msg_1', old, raw), old), raw), /not within 5 minutes/);
  assert.match(S.signatureProblem(secret, { 'webhook-id': 'msg_1', 'webhook-timestamp': ts }, raw), /missing/);
});

test('minted tokens are HS256 over the claims the API reads, signed with the key', () => {
  const key = 'k'.repeat(32);
  const token = S.mintToken(key, { sub: 'u1', app: 'tilechat', ttlSecs: 900, admin: true });
  const [h, p, sig] = token.split('.');
  assert.equal(sig, crypto.createHmac('sha256', key).update(`${h}.${p}`).digest('base64url'));
  assert.deepEqual(JSON.parse(Buffer.from(h, 'base64url')), { alg: 'HS256', typ: 'JWT' });
  const claims = S.claimsOf(token);
  assert.equal(claims.sub, 'u1');
  assert.equal(claims.app_id, 'tilechat');
  assert.equal(claims.tiledesk_api_roles, 'admin');
  assert.ok(Math.abs(claims.exp - Date.now() / 1000 - 900) < 5, `exp ${claims.exp}`);
  assert.equal(S.claimsOf(S.mintToken(key, { sub: 'u2', app: 'a', ttlSecs: 60 })).tiledesk_api_roles, 'user');
  assert.throws(() => S.claimsOf('not-a-token'), /three/);
});

test('scrub hides every token in a line the client printed', () => {
  const token = S.mintToken('key', { sub: 'u1', app: 'tilechat', ttlSecs: 60 });
  const line = S.scrub(`using jwt token: ${token} and again Authorization: ${token}`);
  assert.ok(!line.includes(token.split('.')[2]), line);
  assert.equal(line, 'using jwt token: <jwt> and again Authorization: <jwt>');
});

test('percentiles are nearest-rank', () => {
  const values = Array.from({ length: 20 }, (_, i) => 20 - i); // 20..1, unsorted input
  assert.equal(S.percentile(values, 50), 10);
  assert.equal(S.percentile(values, 95), 19);
  assert.equal(S.percentile(values, 100), 20);
  assert.equal(S.percentile([7], 95), 7);
});
