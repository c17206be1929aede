// The console's view: what the page holds (conversation lists, the open conversation and its
// group) and how it is drawn. Every text from the server is written with textContent, never as
// HTML. live.js changes it from MQTT, console.js from the user's actions.
'use strict';

(function () {
  const { session, paths, call } = window.ChatApi;
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

  /** What the page holds: the lists, the open conversation, the connection. */
  const S = {
    active: new Map(), // conversWith -> conversation row
    archived: new Map(),
    /** The open conversation: {cw, group, name, messages: Map id -> message, next, first, last, groupInfo}. */
    open: null,
    openSeq: 0,
    mqtt: null,
    typing: new Map(), // conversWith -> {writer, timer}
    /** Copies already counted as unread (delivery is at least once). */
    counted: new Set(),
  };
  const refreshTimers = new Map();

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
      if (S.open) renderHeader();
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
      'aria-current': S.open && S.open.cw === c.conversWith ? 'true' : null,
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
    renderList($('conversations'), S.active, $('conversations-empty'), false);
    renderList($('archived-conversations'), S.archived, $('archived-empty'), true);
    if (S.open) renderHeader();
  }

  async function loadLists() {
    session.stats.listLoads += 1;
    const [a, b] = await Promise.all([call('GET', paths.conversations()), call('GET', paths.archived())]);
    S.active = new Map(a.result.map((c) => [c.conversWith, c]));
    S.archived = new Map(b.result.map((c) => [c.conversWith, c]));
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
          S.active.set(cw, row);
          S.archived.delete(cw);
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
    const row = S.active.get(S.open.cw) || S.archived.get(S.open.cw);
    if (row && !S.open.nameFixed) S.open.name = displayName(row);
    $('conversation-title').textContent = S.open.name || S.open.cw;
    const where = S.archived.has(S.open.cw) ? ' · archived' : '';
    $('conversation-kind').textContent = (S.open.group ? `Group ${S.open.cw}` : `Direct with ${S.open.cw}`) + where;
    $('archive').disabled = !S.active.has(S.open.cw);
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
    mine && !S.open.group
      ? el('span', { class: 'status', 'data-status': String(status) }, STATUS_LABELS[status] || String(status))
      : null);
  }

  /**
   * Keeps a message of the open conversation in the server's order: pages come newest first,
   * `older` ones go before everything, live ones after (REALTIME.md: a conversation's copies
   * arrive in the order they were written). Answers whether it is new.
   */
  function keep(m, older) {
    const known = S.open.messages.get(m.message_id);
    const seq = known ? known.seq : older ? --S.open.first : S.open.last++;
    // A status only rises (a copy delivered again after its receipt still reads as read).
    const status = Math.max(Number((known && known.status) || 0), Number(m.status || 0));
    S.open.messages.set(m.message_id, Object.assign({}, known, m, { seq, status }));
    return !known;
  }

  function sortedMessages() {
    return [...S.open.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  function renderTimeline(stickToBottom) {
    const timeline = $('timeline');
    timeline.setAttribute('aria-busy', 'true');
    const fromBottom = timeline.scrollHeight - timeline.scrollTop;
    timeline.replaceChildren(...sortedMessages().map(messageItem));
    timeline.scrollTop = stickToBottom ? timeline.scrollHeight : timeline.scrollHeight - fromBottom;
    timeline.removeAttribute('aria-busy');
    $('load-older').hidden = !S.open.next;
  }

  /** A live message: appended (announced by the log region) when it is the newest. */
  function addMessage(m) {
    const timeline = $('timeline');
    const atBottom = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 40;
    const added = keep(m, false);
    const item = messageItem(S.open.messages.get(m.message_id));
    if (added) {
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
    const m = S.open && S.open.messages.get(id);
    if (!m || Number(m.status || 0) >= status) return;
    m.status = status;
    const li = [...$('timeline').children].find((x) => x.dataset.messageId === id);
    if (li) li.replaceWith(messageItem(m));
  }

  async function openConversation(cw, hint = {}) {
    const seq = ++S.openSeq;
    S.open = {
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
    $('group-panel').hidden = !S.open.group;
    renderTyping();
    if (S.open.group) loadGroup(cw).catch(showError);
    const page = await call('GET', `${paths.messages(cw)}?limit=50`);
    if (seq !== S.openSeq) return;
    keepPage(page.result, false);
    S.open.next = page.next || null;
    renderTimeline(true);
  }

  async function loadOlder() {
    const cw = S.open.cw;
    const page = await call('GET', `${paths.messages(cw)}?limit=50&cursor=${encodeURIComponent(S.open.next)}`);
    if (!S.open || S.open.cw !== cw) return;
    keepPage(page.result, true);
    S.open.next = page.next || null;
    renderTimeline(false);
  }

  // ------------------------------------------------------------------------------------------
  // Groups

  async function loadGroup(gid) {
    try {
      const answer = await call('GET', paths.group(gid));
      if (S.open && S.open.cw === gid) renderGroup(answer.result);
    } catch (e) {
      if (S.open && S.open.cw === gid && (e.status === 403 || e.status === 404)) {
        renderGroup(null, e.status === 404 ? 'No such group (an inline group, or deleted).' : 'You are not a member.');
      } else {
        throw e;
      }
    }
  }

  function renderGroup(group, note) {
    S.open.groupInfo = group;
    $('group-panel').hidden = false;
    $('add-member').hidden = !group;
    if (!group) {
      $('group-owner').textContent = note;
      $('group-members').replaceChildren();
      return;
    }
    if (group.name) {
      S.open.name = group.name;
      S.open.nameFixed = true;
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

  /** "… is typing" for the open conversation (live.js keeps who is typing where). */
  function renderTyping() {
    const t = S.open && S.typing.get(S.open.cw);
    $('typing').textContent = t ? `${t.writer} is typing…` : '';
  }

  window.ConsoleView = {
    S, $, el, looksGroup, isGroup, showError, announce, act, displayName, loadLists, renderLists,
    refreshSoon, renderHeader, addMessage, keepPage, setStatus, sortedMessages, openConversation,
    loadOlder, loadGroup, renderGroup, renderTimeline, renderTyping,
  };
})();
