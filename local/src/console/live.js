// The console's live updates: its MQTT connection (mqtt.js) as a Chat21 client holds it, and
// what the server publishes (REALTIME.md, "What the server publishes to clients") applied to
// the view.
'use strict';

(function () {
  const { session, paths, topics, call } = window.ChatApi;
  const {
    S, $, showError, announce, loadLists, renderLists, refreshSoon, addMessage,
    keepPage, setStatus, renderGroup, renderTimeline, renderTyping,
  } = window.ConsoleView;
  const stats = { mqttMessages: 0, connects: 0 };
  // For automation: how the page learnt what it shows.
  window.chat21Console = { session, stats, apiStats: session.stats };

  function onMessageAdded(cw, m) {
    const updates = !(m.attributes && m.attributes.updateconversation === false);
    if (updates) {
      const before = S.active.get(cw) || S.archived.get(cw);
      const key = `${cw}/${m.message_id}`;
      const isNew = !S.counted.has(key) && !(S.open && S.open.cw === cw && S.open.messages.has(m.message_id));
      if (S.counted.size > 10000) S.counted.clear();
      S.counted.add(key);
      const row = Object.assign({ conversWith: cw, key: cw, unread_count: 0 }, before, m, {
        last_message_text: m.text,
      });
      row.unread_count = Number((before && before.unread_count) || 0);
      if (m.sender !== session.me && isNew && !(before && before.message_id === m.message_id)) {
        row.unread_count += 1;
      }
      S.active.set(cw, row);
      S.archived.delete(cw);
      renderLists();
      refreshSoon(cw);
    }
    if (S.open && S.open.cw === cw) {
      addMessage(m);
    } else if (m.sender !== session.me && m.sender !== 'system') {
      announce(`New message from ${m.sender_fullname || m.sender}`);
    }
  }

  function onConversationUpdated(cw, change) {
    const map = S.active.has(cw) ? S.active : S.archived.has(cw) ? S.archived : null;
    if (map) map.set(cw, Object.assign({}, map.get(cw), change));
    renderLists();
    if (change.peer_read_at && S.open && S.open.cw === cw && !S.open.group) {
      for (const m of S.open.messages.values()) {
        if (m.sender === session.me && m.timestamp <= change.peer_read_at) setStatus(m.message_id, 250);
      }
    }
  }

  function onGroupUpdated(gid, group) {
    const row = S.active.get(gid) || S.archived.get(gid);
    if (row && group.name) row.recipient_fullname = group.name;
    const label = group.notification && group.notification.messagelabel;
    const left = label && label.key === 'MEMBER_LEFT_GROUP' && label.parameters &&
      label.parameters.member_id === session.me;
    if (S.open && S.open.cw === gid) {
      if (left) renderGroup(null, 'You are no longer a member of this group.');
      else renderGroup(group);
    }
    renderLists();
  }

  function onTyping(cw, t) {
    clearTimeout(S.typing.get(cw) && S.typing.get(cw).timer);
    if (t.typing) {
      const timer = setTimeout(() => {
        S.typing.delete(cw);
        renderTyping();
      }, 6000);
      S.typing.set(cw, { writer: t.writer_id, timer });
    } else {
      S.typing.delete(cw);
    }
    renderTyping();
  }

  function onPublish(topic, payload) {
    stats.mqttMessages += 1;
    const tree = topics.tree();
    if (!topic.startsWith(tree)) return;
    const s = topic.slice(tree.length).split('/');
    let data;
    try {
      data = JSON.parse(new TextDecoder().decode(payload));
    } catch (e) {
      console.warn('MQTT: a payload that is not JSON on', topic);
      return;
    }
    const [kind, id, third, fourth] = s;
    if (kind === 'messages' && third === 'clientadded') onMessageAdded(id, data);
    else if (kind === 'messages' && fourth === 'clientupdated') {
      if (S.open && S.open.cw === id && data.status) setStatus(third, Number(data.status));
    } else if (kind === 'conversations' && third === 'clientupdated') onConversationUpdated(id, data);
    else if (kind === 'conversations' && third === 'clientdeleted') {
      S.active.delete(id);
      renderLists();
    } else if (kind === 'archived_conversations' && third === 'clientadded') {
      S.archived.set(id, data);
      S.active.delete(id);
      renderLists();
    } else if (kind === 'archived_conversations' && third === 'clientdeleted') {
      S.archived.delete(id);
      renderLists();
    } else if (kind === 'groups' && third === 'clientupdated') onGroupUpdated(id, data);
    else if (kind === 'typings' && third === 'clientupdated') onTyping(id, data);
  }

  /** After every (re)connect: HTTP has everything the broker did not keep (clean sessions). */
  async function resync() {
    await loadLists();
    if (S.open) {
      const page = await call('GET', `${paths.messages(S.open.cw)}?limit=50`);
      keepPage(page.result, false);
      if (!S.open.next) S.open.next = page.next || null;
      renderTimeline(true);
    }
  }

  function setConnection(state, text) {
    const status = $('connection-status');
    status.dataset.state = state;
    status.textContent = text;
  }

  function connect() {
    const clientId = 'console-' + window.ChatApi.randomId();
    const presence = topics.presence(clientId);
    S.mqtt = new window.MqttClient({
      url: session.mqtt,
      clientId,
      username: 'JWT',
      password: () => window.ChatApi.token(),
      keepalive: window.ChatApi.defaults().keepalive,
      will: { topic: presence, payload: '{"disconnected":true}', qos: 1, retain: true },
      onMessage: onPublish,
      onState: (state, detail) => {
        if (state === 'connecting') setConnection('connecting', 'Connecting…');
        else if (state === 'waiting') setConnection('waiting', `Offline: reconnecting in ${Math.ceil(detail.delayMs / 1000)} s`);
        else if (state === 'refused') {
          setConnection('refused', `Real time refused: ${detail.reason}`);
          showError(new Error(`The MQTT broker refused the connection (${detail.reason}); sign in again.`));
        }
      },
      onConnect: async () => {
        const client = S.mqtt;
        try {
          const granted = await client.subscribe([topics.tree() + '#'], 1);
          if (granted[0] === 0x80) throw new Error('the broker refused the subscription');
          client.publish(presence, '{"connected":true}', { qos: 1, retain: true }).catch(() => {});
          stats.connects += 1;
          setConnection('connected', 'Live');
          await resync();
        } catch (e) {
          showError(e);
        }
      },
    });
    S.mqtt.start();
  }

  window.ConsoleLive = { connect, setConnection };
})();
