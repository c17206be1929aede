// The console's actions (send, mark read, archive, groups and members), signing in and out,
// and the wiring of the page's forms and keys.
'use strict';

(function () {
  const { session, paths, topics, call } = window.ChatApi;
  const {
    S, $, act, looksGroup, loadLists, renderLists, addMessage, setStatus,
    sortedMessages, openConversation, loadOlder, loadGroup,
  } = window.ConsoleView;
  const { connect, setConnection } = window.ConsoleLive;

  // ------------------------------------------------------------------------------------------
  // Actions

  async function send() {
    const text = $('message-text').value;
    if (!S.open || !text.trim()) return;
    const cw = S.open.cw;
    const answer = await call('POST', paths.send(), {
      sender_fullname: session.name,
      recipient_id: cw,
      recipient_fullname: S.open.name || cw,
      text,
      type: 'text',
      channel_type: S.open.group ? 'group' : 'direct',
      message_id: window.ChatApi.randomId(),
    });
    $('message-text').value = '';
    const m = answer.message;
    if (S.open && S.open.cw === cw && !S.open.messages.has(m.message_id)) {
      addMessage(Object.assign({ status: 100 }, m, { timelineOf: session.me, conversWith: cw }));
    }
  }

  async function markRead() {
    const cw = S.open.cw;
    await call('POST', paths.read(cw));
    const row = S.active.get(cw) || S.archived.get(cw);
    if (row) Object.assign(row, { unread_count: 0, is_new: false });
    renderLists();
    // Chat21's receipt: the newest message received here, over MQTT (its sender sees 250).
    const received = sortedMessages().filter((m) => m.sender !== session.me);
    const newest = received.pop();
    if (newest && S.mqtt && S.mqtt.connected) {
      await S.mqtt.publish(topics.receipt(cw, newest.message_id), '{"status":200}', { qos: 1 });
    }
    if (!S.open || S.open.cw !== cw) return;
    for (const m of [...received, newest]) if (m) setStatus(m.message_id, 200);
  }

  async function archive() {
    const cw = S.open.cw;
    await call('DELETE', paths.archive(cw));
    const row = S.active.get(cw);
    if (row) {
      S.active.delete(cw);
      S.archived.set(cw, Object.assign({}, row, { archived: true }));
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
    if (!id || !S.open) return;
    await call('POST', paths.members(S.open.cw), { member_id: id });
    $('add-member-id').value = '';
    await loadGroup(S.open.cw);
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
    if (S.mqtt) {
      const client = S.mqtt;
      S.mqtt = null;
      const presence = client.options.will.topic;
      client.publish(presence, '{"disconnected":true}', { qos: 1, retain: true })
        .catch(() => {}).finally(() => client.stop());
    }
    Object.assign(session, { token: '', exp: 0, me: '', app: '' });
    Object.assign(S, { active: new Map(), archived: new Map(), open: null, openSeq: S.openSeq + 1 });
    S.typing.clear();
    S.counted.clear();
    renderLists();
    $('group-panel').hidden = true;
    $('load-older').hidden = true;
    $('typing').textContent = '';
    $('error').textContent = '';
    for (const id of ['message-text', 'send', 'mark-read', 'archive']) $(id).disabled = true;
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

