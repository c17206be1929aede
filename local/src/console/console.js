// The console's page: sign-in, the conversation lists, the open conversation and its group, and
// the live updates of REALTIME.md over MQTT. Every text from the server is written with
// textContent (never as HTML).
'use strict';

(function () {
  const { session, paths, topics, call } = window.ChatApi;
  const $ = (id) => document.getElementById(id);

  /** An element: attributes (null ones left out) and children (strings become text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === 'string' ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  const looksGroup = (id) => String(id).includes('group-');
  const isGroup = (c) => c.channel_type === 'group' || looksGroup(c.conversWith);

  // ------------------------------------------------------------------------------------------
  // State

  let active = new Map(); // conversWith -> conversation row
  let archived = new Map();
  /** The open conversation: {cw, group, name, messages: Map id -> message, next, groupInfo}. */
  let open = null;
  let openSeq = 0;
  let mqtt = null;
  const typing = new Map(); // conversWith -> {writer, timer}
  const refreshTimers = new Map();
  /** Copies already counted as unread (delivery is at least once). */
  const counted = new Set();
  const stats = { mqttMessages: 0, connects: 0 };
  window.chat21Console = { session, stats, apiStats: session.stats };

  function showError(e) {
    $('error').textContent = e ? (e.message || String(e)) : '';
  }

  function announce(text) {
    const announcer = $('announcer');
    announcer.textContent = '';
    setTimeout(() => (announcer.textContent = text), 50);
  }

  /** Runs a user action: errors go to the alert region, the button is busy meanwhile. */
  async function act(button, action) {
    showError(null);
    if (button) button.disabled = true;
    try {
      await action();
    } catch (e) {
      showError(e);
    } finally {
      if (button) button.disabled = false;
      if (open) renderHeader();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Conversation lists

  function displayName(c) {
    if (isGroup(c)) return c.recipient_fullname || c.conversWith;
    if (c.sender === session.me) return c.recipient_fullname || c.conversWith;
    return c.sender_fullname || c.conversWith;
  }

  function messageText(m) {
    const label = m.attributes && m.attributes.messagelabel;
    if (m.sender === 'system' && label && label.key) {
      const p = label.parameters || {};
      if (label.key === 'GROUP_CREATED') return `Group created by ${p.creator || 'someone'}`;
      if (label.key === 'MEMBER_JOINED_GROUP') return `${p.member_id || 'someone'} joined the group`;
      if (label.key === 'MEMBER_LEFT_GROUP') return `${p.member_id || 'someone'} left the group`;
    }
    return m.text || (m.type && m.type !== 'text' ? `[${m.type}]` : '');
  }

  function conversationItem(c, isArchived) {
    const unread = isArchived ? 0 : Number(c.unread_count || 0);
    const name = displayName(c);
    const button = el('button', {
      type: 'button',
      class: 'open-conversation',
      'aria-current': open && open.cw === c.conversWith ? 'true' : null,
    },
    el('span', { class: 'name' }, name),
    el('span', { class: 'unread-count', 'data-count': String(unread), hidden: unread ? null : 'hidden' },
      String(unread), el('span', { class: 'visually-hidden' }, ' unread')),
    el('span', { class: 'last' }, messageText(c)));
    button.addEventListener('click', () =>
      openConversation(c.conversWith, { group: isGroup(c), name, archived: isArchived }));
    return el('li', {
      class: 'conversation-item' + (unread ? ' has-unread' : ''),
      'data-conversation': c.conversWith,
      'data-unread': String(unread),
      'data-kind': isGroup(c) ? 'group' : 'direct',
    }, button);
  }

  function renderList(list, map, empty, isArchived) {
    const focused = document.activeElement && document.activeElement.closest('[data-conversation]');
    const focusedId = focused && list.contains(focused) ? focused.dataset.conversation : null;
    const rows = [...map.values()].sort((a, b) => (b.timestamp || 0) - (a.timestamp || 0));
    list.replaceChildren(...rows.map((c) => conversationItem(c, isArchived)));
    empty.hidden = rows.length > 0;
    if (focusedId !== null) {
      const again = [...list.children].find((li) => li.dataset.conversation === focusedId);
      if (again) again.querySelector('button').focus();
    }
  }

  function renderLists() {
    renderList($('conversations'), active, $('conversations-empty'), false);
    renderList($('archived-conversations'), archived, $('archived-empty'), true);
    if (open) renderHeader();
  }

  async function loadLists() {
    session.stats.listLoads += 1;
    const [a, b] = await Promise.all([call('GET', paths.conversations()), call('GET', paths.archived())]);
    active = new Map(a.result.map((c) => [c.conversWith, c]));
    archived = new Map(b.result.map((c) => [c.conversWith, c]));
    renderLists();
  }

  /** The server's row of one conversation (exact unread count), shortly after a change. */
  function refreshSoon(cw) {
    clearTimeout(refreshTimers.get(cw));
    refreshTimers.set(cw, setTimeout(async () => {
      refreshTimers.delete(cw);
      try {
        const answer = await call('GET', paths.conversation(cw));
        const row = answer.result && answer.result[0];
        if (row && !row.archived) {
          active.set(cw, row);
          archived.delete(cw);
          renderLists();
        }
      } catch (e) {
        console.warn('refreshing a conversation:', e.message);
      }
    }, 200));
  }

  // ------------------------------------------------------------------------------------------
  // The open conversation

  function renderHeader() {
    const row = active.get(open.cw) || archived.get(open.cw);
    if (row && !open.nameFixed) open.name = displayName(row);
    $('conversation-title').textContent = open.name || open.cw;
    const where = archived.has(open.cw) ? ' · archived' : '';
    $('conversation-kind').textContent = (open.group ? `Group ${open.cw}` : `Direct with ${open.cw}`) + where;
    $('archive').disabled = !active.has(open.cw);
    $('mark-read').disabled = !row;
  }

  const STATUS_LABELS = { 100: 'sent', 150: 'delivered', 200: 'read', 250: 'read' };

  function messageItem(m) {
    const mine = m.sender === session.me;
    const kind = m.sender === 'system' ? 'system' : mine ? 'mine' : 'theirs';
    const when = new Date(m.timestamp || 0);
    const status = Number(m.status || 0);
    return el('li', {
      class: `message ${kind}`,
      'data-message-id': m.message_id,
      'data-sender': m.sender,
      'data-status': String(status),
    },
    el('div', { class: 'meta' },
      el('span', { class: 'sender' }, kind === 'system' ? 'System' : mine ? 'You' : (m.sender_fullname || m.sender)),
      ' ',
      el('time', { datetime: when.toISOString() }, when.toLocaleTimeString())),
    el('div', { class: 'text' }, messageText(m)),
    mine && !open.group
      ? el('span', { class: 'status', 'data-status': String(status) }, STATUS_LABELS[status] || String(status))
      : null);
  }

  /**
   * Keeps a message of the open conversation in the server's order: pages come newest first,
   * `older` ones go before everything, live ones after (REALTIME.md: a conversation's copies
   * arrive in the order they were written). Answers whether it is new.
   */
  function keep(m, older) {
    const known = open.messages.get(m.message_id);
    const seq = known ? known.seq : older ? --open.first : open.last++;
    open.messages.set(m.message_id, Object.assign({}, known, m, { seq }));
    return !known;
  }

  function sortedMessages() {
    return [...open.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  function renderTimeline(stickToBottom) {
    const timeline = $('timeline');
    timeline.setAttribute('aria-busy', 'true');
    const fromBottom = timeline.scrollHeight - timeline.scrollTop;
    timeline.replaceChildren(...sortedMessages().map(messageItem));
    timeline.scrollTop = stickToBottom ? timeline.scrollHeight : timeline.scrollHeight - fromBottom;
    timeline.removeAttribute('aria-busy');
    $('load-older').hidden = !open.next;
  }

  /** A live message: appended (announced by the log region) when it is the newest. */
  function addMessage(m) {
    const timeline = $('timeline');
    const atBottom = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 40;
    const item = messageItem(Object.assign({}, open.messages.get(m.message_id), m));
    if (keep(m, false)) {
      timeline.append(item);
      if (atBottom || m.sender === session.me) timeline.scrollTop = timeline.scrollHeight;
    } else {
      const li = [...timeline.children].find((x) => x.dataset.messageId === m.message_id);
      if (li) li.replaceWith(item);
    }
  }

  /** A page of the timeline (newest first), before what is shown or after it. */
  function keepPage(items, older) {
    for (const m of older ? items : [...items].reverse()) keep(m, older);
  }

  function setStatus(id, status) {
    const m = open && open.messages.get(id);
    if (!m || Number(m.status || 0) >= status) return;
    m.status = status;
    const li = [...$('timeline').children].find((x) => x.dataset.messageId === id);
    if (li) li.replaceWith(messageItem(m));
  }

  async function openConversation(cw, hint = {}) {
    const seq = ++openSeq;
    open = {
      cw,
      group: hint.group || looksGroup(cw),
      name: hint.name || cw,
      nameFixed: false,
      messages: new Map(),
      first: 0,
      last: 0,
      next: null,
      groupInfo: null,
    };
    renderLists();
    $('timeline').replaceChildren();
    $('message-text').disabled = false;
    $('send').disabled = false;
    $('group-panel').hidden = !open.group;
    renderTyping();
    if (open.group) loadGroup(cw).catch(showError);
    const page = await call('GET', `${paths.messages(cw)}?limit=50`);
    if (seq !== openSeq) return;
    keepPage(page.result, false);
    open.next = page.next || null;
    renderTimeline(true);
  }

  async function loadOlder() {
    const cw = open.cw;
    const page = await call('GET', `${paths.messages(cw)}?limit=50&cursor=${encodeURIComponent(open.next)}`);
    if (!open || open.cw !== cw) return;
    keepPage(page.result, true);
    open.next = page.next || null;
    renderTimeline(false);
  }

  // ------------------------------------------------------------------------------------------
  // Groups

  async function loadGroup(gid) {
    try {
      const answer = await call('GET', paths.group(gid));
      if (open && open.cw === gid) renderGroup(answer.result);
    } catch (e) {
      if (open && open.cw === gid && (e.status === 403 || e.status === 404)) {
        renderGroup(null, e.status === 404 ? 'No such group (an inline group, or deleted).' : 'You are not a member.');
      } else {
        throw e;
      }
    }
  }

  function renderGroup(group, note) {
    open.groupInfo = group;
    $('group-panel').hidden = false;
    $('add-member').hidden = !group;
    if (!group) {
      $('group-owner').textContent = note;
      $('group-members').replaceChildren();
      return;
    }
    if (group.name) {
      open.name = group.name;
      open.nameFixed = true;
      $('conversation-title').textContent = group.name;
    }
    $('group-owner').textContent = `Owner: ${group.owner}`;
    const ids = Object.keys(group.members || {}).sort();
    $('group-members').replaceChildren(...ids.map((id) => {
      const me = id === session.me;
      const remove = el('button', { type: 'button', class: 'remove-member', 'aria-label': me ? 'Leave the group' : `Remove ${id}` },
        me ? 'Leave' : 'Remove');
      remove.addEventListener('click', () => act(remove, async () => {
        await call('DELETE', paths.member(group.uid, id));
        await loadGroup(group.uid);
      }));
      return el('li', { 'data-member': id }, el('span', { class: 'member-id' }, id),
        id === group.owner ? el('span', { class: 'badge' }, 'owner') : null, remove);
    }));
  }

  // ------------------------------------------------------------------------------------------
  // Live updates (REALTIME.md, "What the server publishes to clients")

  function onMessageAdded(cw, m) {
    const updates = !(m.attributes && m.attributes.updateconversation === false);
    if (updates) {
      const before = active.get(cw) || archived.get(cw);
      const key = `${cw}/${m.message_id}`;
      const isNew = !counted.has(key) && !(open && open.cw === cw && open.messages.has(m.message_id));
      if (counted.size > 10000) counted.clear();
      counted.add(key);
      const row = Object.assign({ conversWith: cw, key: cw, unread_count: 0 }, before, m, {
        last_message_text: m.text,
      });
      row.unread_count = Number((before && before.unread_count) || 0);
      if (m.sender !== session.me && isNew && !(before && before.message_id === m.message_id)) {
        row.unread_count += 1;
      }
      active.set(cw, row);
      archived.delete(cw);
      renderLists();
      refreshSoon(cw);
    }
    if (open && open.cw === cw) {
      addMessage(m);
    } else if (m.sender !== session.me && m.sender !== 'system') {
      announce(`New message from ${m.sender_fullname || m.sender}`);
    }
  }

  function onConversationUpdated(cw, change) {
    const map = active.has(cw) ? active : archived.has(cw) ? archived : null;
    if (map) map.set(cw, Object.assign({}, map.get(cw), change));
    renderLists();
    if (change.peer_read_at && open && open.cw === cw && !open.group) {
      for (const m of open.messages.values()) {
        if (m.sender === session.me && m.timestamp <= change.peer_read_at) setStatus(m.message_id, 250);
      }
    }
  }

  function onGroupUpdated(gid, group) {
    const row = active.get(gid) || archived.get(gid);
    if (row && group.name) row.recipient_fullname = group.name;
    const label = group.notification && group.notification.messagelabel;
    const left = label && label.key === 'MEMBER_LEFT_GROUP' && label.parameters &&
      label.parameters.member_id === session.me;
    if (open && open.cw === gid) {
      if (left) renderGroup(null, 'You are no longer a member of this group.');
      else renderGroup(group);
    }
    renderLists();
  }

  function renderTyping() {
    const t = open && typing.get(open.cw);
    $('typing').textContent = t ? `${t.writer} is typing…` : '';
  }

  function onTyping(cw, t) {
    clearTimeout(typing.get(cw) && typing.get(cw).timer);
    if (t.typing) {
      const timer = setTimeout(() => {
        typing.delete(cw);
        renderTyping();
      }, 6000);
      typing.set(cw, { writer: t.writer_id, timer });
    } else {
      typing.delete(cw);
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
      if (open && open.cw === id && data.status) setStatus(third, Number(data.status));
    } else if (kind === 'conversations' && third === 'clientupdated') onConversationUpdated(id, data);
    else if (kind === 'conversations' && third === 'clientdeleted') {
      active.delete(id);
      renderLists();
    } else if (kind === 'archived_conversations' && third === 'clientadded') {
      archived.set(id, data);
      active.delete(id);
      renderLists();
    } else if (kind === 'archived_conversations' && third === 'clientdeleted') {
      archived.delete(id);
      renderLists();
    } else if (kind === 'groups' && third === 'clientupdated') onGroupUpdated(id, data);
    else if (kind === 'typings' && third === 'clientupdated') onTyping(id, data);
  }

  /** After every (re)connect: HTTP has everything the broker did not keep (clean sessions). */
  async function resync() {
    await loadLists();
    if (open) {
      const page = await call('GET', `${paths.messages(open.cw)}?limit=50`);
      keepPage(page.result, false);
      if (!open.next) open.next = page.next || null;
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
    mqtt = new window.MqttClient({
      url: session.mqtt,
      clientId,
      username: 'JWT',
      password: () => window.ChatApi.token(),
      keepalive: 60,
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
        const client = mqtt;
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
    mqtt.start();
  }

  // ------------------------------------------------------------------------------------------
  // Actions

  async function send() {
    const text = $('message-text').value;
    if (!open || !text.trim()) return;
    const cw = open.cw;
    const answer = await call('POST', paths.send(), {
      sender_fullname: session.name,
      recipient_id: cw,
      recipient_fullname: open.name || cw,
      text,
      type: 'text',
      channel_type: open.group ? 'group' : 'direct',
      message_id: window.ChatApi.randomId(),
    });
    $('message-text').value = '';
    const m = answer.message;
    if (open && open.cw === cw && !open.messages.has(m.message_id)) {
      addMessage(Object.assign({ status: 100 }, m, { timelineOf: session.me, conversWith: cw }));
    }
  }

  async function markRead() {
    const cw = open.cw;
    await call('POST', paths.read(cw));
    const row = active.get(cw) || archived.get(cw);
    if (row) Object.assign(row, { unread_count: 0, is_new: false });
    renderLists();
    // Chat21's receipt: the newest message received here, over MQTT (its sender sees 250).
    const received = sortedMessages().filter((m) => m.sender !== session.me);
    const newest = received.pop();
    if (newest && mqtt && mqtt.connected) {
      await mqtt.publish(topics.receipt(cw, newest.message_id), '{"status":200}', { qos: 1 });
    }
    for (const m of [...received, newest]) if (m && cw === open.cw) setStatus(m.message_id, 200);
  }

  async function archive() {
    const cw = open.cw;
    await call('DELETE', paths.archive(cw));
    const row = active.get(cw);
    if (row) {
      active.delete(cw);
      archived.set(cw, Object.assign({}, row, { archived: true }));
    }
    renderLists();
  }

  async function createGroup() {
    const name = $('new-group-name').value.trim();
    const members = $('new-group-members').value.split(',').map((s) => s.trim()).filter(Boolean);
    if (!name || !members.length) throw new Error('A group needs a name and at least one member.');
    const group_members = Object.fromEntries(members.map((id) => [id, 1]));
    const answer = await call('POST', paths.groups(), { group_name: name, group_members });
    $('new-group-name').value = '';
    $('new-group-members').value = '';
    await openConversation(answer.group.uid, { group: true, name });
    $('message-text').focus();
  }

  async function addMember() {
    const id = $('add-member-id').value.trim();
    if (!id || !open) return;
    await call('POST', paths.members(open.cw), { member_id: id });
    $('add-member-id').value = '';
    await loadGroup(open.cw);
  }

  // ------------------------------------------------------------------------------------------
  // Signing in and out

  async function signIn() {
    const api = window.ChatApi.normalizeApi($('api-url').value);
    const mqttUrl = $('mqtt-url').value.trim();
    const pasted = $('token').value.trim();
    let user = $('user-id').value.trim();
    let app = $('app-id').value.trim() || 'default';
    let token;
    let exp;
    if (!api || !mqttUrl) throw new Error('Fill in the API URL and the MQTT URL (under Endpoints).');
    if (pasted) {
      const claims = window.ChatApi.claims(pasted);
      if (!claims || typeof claims.sub !== 'string' || typeof claims.app_id !== 'string') {
        throw new Error('That is not a Chat21 token: it needs the claims sub and app_id.');
      }
      if (claims.exp && claims.exp * 1000 < Date.now()) throw new Error('That token has expired.');
      [token, user, app, exp] = [pasted, claims.sub, claims.app_id, claims.exp || 0];
    } else {
      if (!user) throw new Error('Enter a user id (or paste a token).');
      const minted = await window.ChatApi.mint(api, user, app);
      [token, exp] = [minted.token, minted.exp];
    }
    Object.assign(session, {
      api, mqtt: mqttUrl, app, me: user, token, exp, minted: !pasted,
      name: $('full-name').value.trim() || user,
    });
    // The token is checked by a first call before the page changes.
    await loadLists();
    $('token').value = '';
    $('sign-in-view').hidden = true;
    $('chat-view').hidden = false;
    $('sign-out').hidden = false;
    $('whoami').hidden = false;
    $('whoami').textContent = `${session.name} (${session.me}) · app ${session.app}`;
    connect();
    $('new-direct-user').focus();
  }

  function signOut() {
    if (mqtt) {
      const client = mqtt;
      mqtt = null;
      const presence = client.options.will.topic;
      client.publish(presence, '{"disconnected":true}', { qos: 1, retain: true })
        .catch(() => {}).finally(() => client.stop());
    }
    Object.assign(session, { token: '', exp: 0, me: '', app: '' });
    active = new Map();
    archived = new Map();
    open = null;
    $('chat-view').hidden = true;
    $('sign-in-view').hidden = false;
    $('sign-out').hidden = true;
    $('whoami').hidden = true;
    $('timeline').replaceChildren();
    $('conversation-title').textContent = 'No conversation open';
    $('conversation-kind').textContent = '';
    setConnection('signed-out', 'Signed out');
    $('user-id').focus();
  }

  // ------------------------------------------------------------------------------------------
  // Wiring

  function onSubmit(form, button, action) {
    $(form).addEventListener('submit', (event) => {
      event.preventDefault();
      act($(button), action);
    });
  }

  const d = window.ChatApi.defaults();
  $('api-url').value = d.api;
  $('mqtt-url').value = d.mqtt;
  $('dev-hint').hidden = !d.devTokens;
  $('token-hint').hidden = d.devTokens;
  $('token-help').hidden = !d.devTokens;

  onSubmit('sign-in', 'sign-in-button', async () => {
    $('sign-in-error').textContent = '';
    try {
      await signIn();
    } catch (e) {
      $('sign-in-error').textContent = e.message;
    }
  });
  onSubmit('compose', 'send', send);
  onSubmit('new-group', 'new-group-create', createGroup);
  onSubmit('add-member', 'add-member-button', addMember);
  onSubmit('new-direct', 'new-direct-open', async () => {
    const id = $('new-direct-user').value.trim();
    if (!id) return;
    $('new-direct-user').value = '';
    await openConversation(id, { group: looksGroup(id), name: id });
    $('message-text').focus();
  });
  $('message-text').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $('compose').requestSubmit();
    }
  });
  $('mark-read').addEventListener('click', () => act($('mark-read'), markRead));
  $('archive').addEventListener('click', () => act($('archive'), archive));
  $('load-older').addEventListener('click', () => act($('load-older'), loadOlder));
  $('sign-out').addEventListener('click', signOut);
})();
