// A small MQTT 3.1.1 client over WebSocket, written for the console: what a Chat21 client needs
// and no more. CONNECT with the JWT as password and a will message, SUBSCRIBE, PUBLISH at QoS 0
// and 1 (PUBACK awaited), QoS 1 and 2 deliveries acknowledged, PINGREQ keep-alive, and
// reconnection with exponential backoff. Plain script (no modules), so the page also works
// opened from a file.
'use strict';

(function (global) {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();

  const CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, PUBREC = 5, PUBREL = 6, PUBCOMP = 7,
    SUBSCRIBE = 8, SUBACK = 9, PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14;

  const CONNACK_REASONS = {
    1: 'unacceptable protocol version',
    2: 'client id rejected',
    3: 'server unavailable',
    4: 'bad user name or password',
    5: 'not authorized',
  };

  function bytes(value) {
    return typeof value === 'string' ? encoder.encode(value) : value;
  }

  function concat(parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function u16(n) {
    return Uint8Array.of(n >> 8, n & 0xff);
  }

  /** A length-prefixed string (or bytes), as MQTT writes them. */
  function prefixed(value) {
    const b = bytes(value);
    if (b.length > 0xffff) throw new Error('an MQTT string is at most 65535 bytes');
    return concat([u16(b.length), b]);
  }

  /** MQTT's variable-length "remaining length". */
  function remainingLength(n) {
    if (n > 268435455) throw new Error('an MQTT packet is at most 256 MB');
    const out = [];
    do {
      let digit = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) digit |= 0x80;
      out.push(digit);
    } while (n > 0);
    return Uint8Array.from(out);
  }

  function packet(type, flags, parts) {
    const body = concat(parts);
    return concat([Uint8Array.of((type << 4) | flags), remainingLength(body.length), body]);
  }

  /**
   * Splits a byte stream into packets: returns the complete ones and keeps the rest (a
   * WebSocket message may carry part of a packet, or several).
   */
  class PacketReader {
    constructor() {
      this.buffer = new Uint8Array(0);
    }

    push(chunk) {
      this.buffer = this.buffer.length ? concat([this.buffer, chunk]) : chunk;
      const packets = [];
      for (;;) {
        if (this.buffer.length < 2) break;
        let length = 0, multiplier = 1, at = 1, complete = false;
        while (at < this.buffer.length && at <= 4) {
          const digit = this.buffer[at++];
          length += (digit & 0x7f) * multiplier;
          multiplier *= 128;
          if ((digit & 0x80) === 0) {
            complete = true;
            break;
          }
        }
        if (!complete) {
          if (at > 4) throw new Error('malformed remaining length');
          break;
        }
        if (this.buffer.length < at + length) break;
        packets.push({
          type: this.buffer[0] >> 4,
          flags: this.buffer[0] & 0x0f,
          body: this.buffer.subarray(at, at + length),
        });
        this.buffer = this.buffer.subarray(at + length);
      }
      return packets;
    }
  }

  /**
   * options: url, clientId, username, password (async () => string: asked at every connect,
   * so a fresh token can be used), keepalive (seconds), will {topic, payload, qos, retain},
   * onConnect() (after each CONNACK 0: subscribe here, the session is clean),
   * onMessage(topic, payloadBytes, {qos, retain}), onState(state, detail) with state one of
   * connecting, connected, waiting (for a reconnect), refused (stopped), stopped.
   */
  class MqttClient {
    constructor(options) {
      this.options = Object.assign(
        { keepalive: 60, connectTimeoutMs: 10000, minBackoffMs: 1000, maxBackoffMs: 30000 },
        options,
      );
      this.ws = null;
      this.running = false;
      this.connected = false;
      this.attempts = 0;
      this.nextId = 1;
      this.waiting = new Map(); // packet id -> {resolve, reject}
      this.received = new Set(); // QoS 2 packet ids awaiting PUBREL
      this.timers = {};
    }

    start() {
      if (this.running) return;
      this.running = true;
      this.attempts = 0;
      this.open();
    }

    /** Disconnects cleanly (no will) and stops reconnecting. */
    stop() {
      this.running = false;
      this.clearTimers();
      if (this.ws) {
        if (this.connected) this.send(packet(DISCONNECT, 0, []));
        this.ws.close();
      }
      this.teardown(new Error('stopped'));
      this.state('stopped');
    }

    state(name, detail) {
      if (this.options.onState) this.options.onState(name, detail);
    }

    clearTimers() {
      for (const t of Object.values(this.timers)) {
        clearTimeout(t);
        clearInterval(t);
      }
      this.timers = {};
    }

    async open() {
      this.clearTimers();
      this.state('connecting', { attempt: this.attempts + 1 });
      let password;
      try {
        password = await this.options.password();
      } catch (e) {
        this.state('refused', { reason: 'no token: ' + e.message });
        this.running = false;
        return;
      }
      if (!this.running) return;
      let ws;
      try {
        ws = new WebSocket(this.options.url, ['mqtt']);
      } catch (e) {
        this.state('refused', { reason: 'bad MQTT URL: ' + e.message });
        this.running = false;
        return;
      }
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      const reader = new PacketReader();
      this.timers.connect = setTimeout(() => {
        if (this.ws === ws && !this.connected) ws.close();
      }, this.options.connectTimeoutMs);
      ws.onopen = () => this.send(this.connectPacket(password));
      ws.onmessage = (event) => {
        if (this.ws !== ws) return;
        try {
          for (const p of reader.push(new Uint8Array(event.data))) this.handle(p);
        } catch (e) {
          console.error('MQTT: dropping the connection:', e);
          ws.close();
        }
      };
      ws.onclose = () => this.closed(ws);
      ws.onerror = () => {}; // onclose follows
    }

    connectPacket(password) {
      const o = this.options;
      let flags = 0x02; // clean session
      const payload = [prefixed(o.clientId)];
      if (o.will) {
        flags |= 0x04 | ((o.will.qos || 0) << 3) | (o.will.retain ? 0x20 : 0);
        payload.push(prefixed(o.will.topic), prefixed(o.will.payload));
      }
      if (o.username != null) {
        flags |= 0x80;
        payload.push(prefixed(o.username));
      }
      if (password != null) {
        flags |= 0x40;
        payload.push(prefixed(password));
      }
      const header = concat([prefixed('MQTT'), Uint8Array.of(4, flags), u16(o.keepalive)]);
      return packet(CONNECT, 0, [header, ...payload]);
    }

    closed(ws) {
      if (this.ws !== ws) return;
      this.ws = null;
      const wasConnected = this.connected;
      this.connected = false;
      this.clearTimers();
      this.teardown(new Error('the connection closed'));
      if (!this.running) return;
      if (wasConnected) this.attempts = 0;
      const backoff = Math.min(
        this.options.maxBackoffMs,
        this.options.minBackoffMs * 2 ** Math.min(this.attempts, 16),
      );
      const delay = Math.round(backoff * (0.5 + Math.random() / 2));
      this.attempts += 1;
      this.state('waiting', { delayMs: delay });
      this.timers.reconnect = setTimeout(() => this.open(), delay);
    }

    /** Fails every publish or subscription still waiting for its answer. */
    teardown(error) {
      for (const w of this.waiting.values()) w.reject(error);
      this.waiting.clear();
      this.received.clear();
    }

    send(bytesOut) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(bytesOut);
        return true;
      }
      return false;
    }

    packetId() {
      for (let i = 0; i < 0xffff; i++) {
        const id = this.nextId;
        this.nextId = this.nextId === 0xffff ? 1 : this.nextId + 1;
        if (!this.waiting.has(id)) return id;
      }
      throw new Error('no free MQTT packet id');
    }

    await(id) {
      return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    }

    answer(id, value) {
      const w = this.waiting.get(id);
      if (w) {
        this.waiting.delete(id);
        w.resolve(value);
      }
    }

    handle(p) {
      const view = new DataView(p.body.buffer, p.body.byteOffset, p.body.byteLength);
      switch (p.type) {
        case CONNACK: {
          clearTimeout(this.timers.connect);
          const code = p.body[1];
          if (code !== 0) {
            this.running = false;
            this.state('refused', { code, reason: CONNACK_REASONS[code] || 'code ' + code });
            this.ws.close();
            return;
          }
          this.connected = true;
          this.attempts = 0;
          this.startKeepalive();
          this.state('connected');
          if (this.options.onConnect) this.options.onConnect();
          return;
        }
        case PUBLISH: {
          const qos = (p.flags >> 1) & 3;
          const topicLength = view.getUint16(0);
          const topic = decoder.decode(p.body.subarray(2, 2 + topicLength));
          let at = 2 + topicLength;
          let id = 0;
          if (qos > 0) {
            id = view.getUint16(at);
            at += 2;
          }
          const payload = p.body.slice(at);
          if (qos === 1) this.send(packet(PUBACK, 0, [u16(id)]));
          if (qos === 2) {
            this.send(packet(PUBREC, 0, [u16(id)]));
            if (this.received.has(id)) return; // a resend: delivered once already
            this.received.add(id);
          }
          if (this.options.onMessage) {
            this.options.onMessage(topic, payload, { qos, retain: (p.flags & 1) === 1 });
          }
          return;
        }
        case PUBREL: {
          const id = view.getUint16(0);
          this.received.delete(id);
          this.send(packet(PUBCOMP, 0, [u16(id)]));
          return;
        }
        case PUBACK:
          this.answer(view.getUint16(0));
          return;
        case SUBACK:
          this.answer(view.getUint16(0), Array.from(p.body.subarray(2)));
          return;
        case PINGRESP:
          this.pingAnswered = true;
          return;
        default:
          return;
      }
    }

    /**
     * PINGREQ every half keep-alive; no PINGRESP by the next one means the connection is gone
     * (closed, so the client reconnects).
     */
    startKeepalive() {
      this.pingAnswered = true;
      if (!(this.options.keepalive > 0)) return; // 0: no keep-alive
      const every = this.options.keepalive * 500;
      this.timers.ping = setInterval(() => {
        if (!this.pingAnswered) {
          if (this.ws) this.ws.close();
          return;
        }
        this.pingAnswered = false;
        this.send(packet(PINGREQ, 0, []));
      }, every);
    }

    /** Resolves with the granted QoS of each filter (0x80 = refused). */
    subscribe(filters, qos = 1) {
      if (!this.connected) return Promise.reject(new Error('not connected'));
      const id = this.packetId();
      const parts = [u16(id)];
      for (const f of filters) parts.push(prefixed(f), Uint8Array.of(qos));
      const answered = this.await(id);
      this.send(packet(SUBSCRIBE, 0x02, parts));
      return answered;
    }

    /** QoS 0 resolves when written, QoS 1 on the broker's PUBACK. */
    publish(topic, payload, { qos = 1, retain = false } = {}) {
      if (!this.connected) return Promise.reject(new Error('not connected'));
      if (qos > 1) return Promise.reject(new Error('QoS 2 publishes are not supported'));
      const flags = (qos << 1) | (retain ? 1 : 0);
      const parts = [prefixed(topic)];
      let answered = Promise.resolve();
      if (qos > 0) {
        const id = this.packetId();
        parts.push(u16(id));
        answered = this.await(id);
      }
      parts.push(bytes(payload));
      this.send(packet(PUBLISH, flags, parts));
      return answered;
    }
  }

  global.MqttClient = MqttClient;
  global.MqttPacketReader = PacketReader;
})(typeof window !== 'undefined' ? window : globalThis);
