// The console's session: where the API and the broker are, who signed in, and the token,
// which is kept in memory only (never in storage). HTTP calls go through `ChatApi.call`, which
// answers the API's JSON or throws an Error carrying the API's message, status and code.
'use strict';

(function (global) {
  /** Seconds before a minted token's end when the console mints the next one. */
  const RENEW_BEFORE_SECS = 120;
  const CALL_TIMEOUT_MS = 15000;

  const config = (() => {
    try {
      return JSON.parse(document.getElementById('console-config').textContent || '{}');
    } catch (e) {
      return {};
    }
  })();

  /**
   * Defaults: ?api= and ?mqtt= first; else the page's own server, as chat21-local serves it.
   * ?keepalive= sets the MQTT keep-alive in seconds (2 to 1200, default 60; IoT Core takes 30
   * and more).
   */
  function defaults() {
    const params = new URLSearchParams(location.search);
    const keepalive = Number(params.get('keepalive'));
    const served = location.protocol === 'http:' || location.protocol === 'https:';
    const host = served ? location.hostname : '127.0.0.1';
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return {
      api: params.get('api') || (served ? location.origin : 'http://127.0.0.1:8004'),
      mqtt: params.get('mqtt') || `${scheme}://${host}:${config.mqtt_ws_port || 15675}/ws`,
      devTokens: config.dev_tokens === true,
      keepalive: Number.isInteger(keepalive) && keepalive >= 2 && keepalive <= 1200 ? keepalive : 60,
    };
  }

  /** The API's base: no trailing slash, no `/api` (Chat21 configurations often include it). */
  function normalizeApi(url) {
    return url.trim().replace(/\/+$/, '').replace(/\/api$/, '');
  }

  /** A JWT's claims (not verified: the server does that); null when it is not a JWT. */
  function claims(token) {
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    try {
      const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
      const json = new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)));
      const value = JSON.parse(json);
      return value && typeof value === 'object' ? value : null;
    } catch (e) {
      return null;
    }
  }

  function randomId() {
    if (global.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  /** An id as one path segment. */
  function seg(id) {
    return encodeURIComponent(id);
  }

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function fetchJson(url, init, what) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), CALL_TIMEOUT_MS);
    let response;
    try {
      response = await fetch(url, Object.assign({ signal: controller.signal }, init));
    } catch (e) {
      const why = e.name === 'AbortError'
        ? `no answer in ${CALL_TIMEOUT_MS / 1000} s`
        : 'network error (is the API URL right, and does the API allow this page\'s origin?)';
      throw new ApiError(`${what}: ${why}`, 0, 'network');
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.message ? body.message : `HTTP ${response.status}`;
      throw new ApiError(`${what}: ${message}`, response.status, body && body.code);
    }
    return body;
  }

  /** The signed-in user: `sign-in` fills it, `call` uses it. */
  const session = {
    api: '',
    mqtt: '',
    app: '',
    me: '',
    name: '',
    token: '',
    exp: 0,
    minted: false,
    stats: { calls: 0, listLoads: 0 },
  };

  /** Asks a development server for a token (POST /console/token). */
  async function mint(api, userId, appId) {
    const answer = await fetchJson(`${api}/console/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: userId, app_id: appId }),
    }, 'minting a token').catch((e) => {
      if (e.status === 404 || e.status === 405) {
        throw new ApiError('this server mints no tokens (it has a real JWT_KEY): paste a token', 404, e.code);
      }
      throw e;
    });
    return answer;
  }

  /** The token to use now: a minted one is renewed before it ends. */
  async function token() {
    const now = Date.now() / 1000;
    if (session.minted && session.exp - now < RENEW_BEFORE_SECS) {
      const minted = await mint(session.api, session.me, session.app);
      session.token = minted.token;
      session.exp = minted.exp;
    }
    return session.token;
  }

  /** One call of the API; a minted token refused (401) is renewed and the call made once more. */
  async function call(method, path, body, retried) {
    const headers = { Authorization: await token() };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    session.stats.calls += 1;
    try {
      return await fetchJson(session.api + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      }, `${method} ${decodeURIComponent(path.split('?')[0])}`);
    } catch (e) {
      if (e.status === 401 && session.minted && !retried) {
        session.exp = 0;
        return call(method, path, body, true);
      }
      throw e;
    }
  }

  /** Paths of the API for the signed-in user. */
  const paths = {
    conversations: () => `/api/${seg(session.app)}/${seg(session.me)}/conversations`,
    archived: () => `/api/${seg(session.app)}/${seg(session.me)}/conversations/archived`,
    conversation: (cw) => `/api/${seg(session.app)}/${seg(session.me)}/conversations/${seg(cw)}`,
    messages: (cw) => `/api/${seg(session.app)}/${seg(session.me)}/conversations/${seg(cw)}/messages`,
    read: (cw) => `/api/${seg(session.app)}/${seg(session.me)}/conversations/${seg(cw)}/read`,
    archive: (cw) => `/api/${seg(session.app)}/conversations/${seg(cw)}`,
    send: () => `/api/${seg(session.app)}/messages`,
    groups: () => `/api/${seg(session.app)}/groups`,
    group: (gid) => `/api/${seg(session.app)}/groups/${seg(gid)}`,
    members: (gid) => `/api/${seg(session.app)}/groups/${seg(gid)}/members`,
    member: (gid, mid) => `/api/${seg(session.app)}/groups/${seg(gid)}/members/${seg(mid)}`,
  };

  /** MQTT topics of REALTIME.md for the signed-in user. */
  const topics = {
    tree: () => `apps/${session.app}/users/${session.me}/`,
    presence: (clientId) => `apps/${session.app}/users/${session.me}/presence/${clientId}`,
    receipt: (cw, id) => `apps/${session.app}/users/${session.me}/messages/${cw}/${id}/update`,
  };

  global.ChatApi = { defaults, normalizeApi, claims, randomId, mint, token, call, session, paths, topics, ApiError };
})(typeof window !== 'undefined' ? window : globalThis);
