// The chat page: one EventSource per tab on /api/stream, REST for everything else.
// All user text goes into the page with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const HISTORY_PAGE = 50;
  const TYPING_EVERY_MS = 3000;
  const GROUP_MS = 5 * 60 * 1000;

  const state = {
    me: null,
    rooms: new Map(), // name -> room as GET /api/rooms returns it
    current: null, // the open room's name
    draftDm: null, // the other user, for a DM room that does not exist yet
    messages: new Map(), // seq -> message, for the open room
    oldest: null, // lowest seq loaded in the open room
    loadingOlder: false,
    pending: new Map(), // client_msg_id -> {room, text, el}
    lastEventId: null,
    source: null,
    backoff: 1000,
    reconnectTimer: null,
    typing: new Map(), // user -> expiry (ms), for the open room
    typingSentAt: 0,
    online: new Set(), // usernames known online
    members: [],
    editing: null, // seq being edited
    readTimer: null,
    notifications: { unread: 0 },
  };

  // -- HTTP ------------------------------------------------------------------------------

  async function api(method, path, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error(data?.error?.message || `HTTP ${response.status}`);
      error.status = response.status;
      error.code = data?.error?.code;
      throw error;
    }
    return data;
  }

  const roomPath = (room) => `/api/rooms/${encodeURIComponent(room)}`;

  function actionButton(label, testid, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    if (testid) button.dataset.testid = testid;
    button.textContent = label;
    button.addEventListener("click", onClick);
    return button;
  }

  // -- sign in ---------------------------------------------------------------------------

  async function boot() {
    bindUi();
    try {
      state.me = await api("GET", "/api/me");
      start();
    } catch {
      showAuth();
    }
  }

  function showAuth() {
    $("app").hidden = true;
    $("auth").hidden = false;
    $("auth-username").focus();
  }

  async function signIn(register) {
    const username = $("auth-username").value.trim();
    const password = $("auth-password").value;
    $("auth-error").textContent = "";
    try {
      if (register) await api("POST", "/api/users", { username, password });
      state.me = await api("POST", "/api/session", { username, password });
      $("auth-password").value = "";
      start();
    } catch (error) {
      $("auth-error").textContent = error.message;
    }
  }

  async function signOut() {
    try { await api("DELETE", "/api/session"); } catch { /* signed out either way */ }
    if (state.source) state.source.close();
    location.reload();
  }

  async function start() {
    $("auth").hidden = true;
    $("app").hidden = false;
    $("me").textContent = state.me.username;
    await loadRooms();
    connect();
    const first = [...state.rooms.values()].find((r) => r.member);
    if (first && !state.current) openRoom(first.name);
  }

  // -- rooms and the sidebar -------------------------------------------------------------

  async function loadRooms() {
    const data = await api("GET", "/api/rooms");
    state.rooms = new Map(data.rooms.map((r) => [r.name, r]));
    renderRooms();
    for (const room of state.rooms.values()) {
      if (room.kind === "dm") refreshPresence(room.name);
    }
  }

  function renderRooms() {
    const list = $("room-list");
    list.replaceChildren();
    for (const room of state.rooms.values()) {
      if (!room.member) continue;
      const li = document.createElement("li");
      li.dataset.room = room.name;
      li.dataset.kind = room.kind;
      const button = document.createElement("button");
      button.type = "button";
      if (room.name === state.current) button.setAttribute("aria-current", "page");
      if (room.kind === "dm") {
        const dot = document.createElement("span");
        dot.className = "dot";
        dot.dataset.testid = "presence-dot";
        dot.dataset.online = String(state.online.has(room.with));
        button.append(dot);
      }
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = room.kind === "dm" ? room.with : `# ${room.name}`;
      const unread = document.createElement("span");
      unread.className = "badge";
      unread.dataset.testid = "unread";
      unread.textContent = room.unread > 0 ? String(room.unread) : "";
      const mentions = document.createElement("span");
      mentions.className = "badge mention";
      mentions.dataset.testid = "mentions";
      mentions.textContent = room.mentions > 0 ? `@${room.mentions}` : "";
      button.append(label, mentions, unread);
      if (room.unread > 0) li.classList.add("unread");
      button.addEventListener("click", () => openRoom(room.name));
      li.append(button);
      list.append(li);
    }
    renderBrowse();
    updateTitle();
  }

  function renderBrowse() {
    // Public rooms the user is not in, one click from joining.
    const list = $("browse-list");
    list.replaceChildren();
    for (const room of state.rooms.values()) {
      if (room.member || room.kind !== "room") continue;
      const li = document.createElement("li");
      li.dataset.room = room.name;
      li.append(actionButton(`Join # ${room.name}`, null, () => joinOrCreate(room.name)));
      list.append(li);
    }
    list.hidden = list.children.length === 0;
    document.getElementById("browse-heading").hidden = list.hidden;
  }

  function updateTitle() {
    let total = 0;
    for (const room of state.rooms.values()) if (room.member) total += room.unread || 0;
    document.title = total > 0 ? `(${total}) Chat` : "Chat";
  }

  async function joinOrCreate(name) {
    name = name.trim().toLowerCase();
    if (!name) return;
    try {
      await api("POST", `${roomPath(name)}/join`);
    } catch (error) {
      if (error.status !== 404) return toast("Could not join", error.message);
      try {
        await api("POST", "/api/rooms", { name });
      } catch (createError) {
        return toast("Could not create the room", createError.message);
      }
    }
    $("new-room").value = "";
    await loadRooms();
    openRoom(name);
  }

  function dmName(a, b) {
    return [a, b].sort().join("~");
  }

  function openDm(user) {
    user = user.trim().toLowerCase();
    if (!user || user === state.me.username) return;
    $("new-dm").value = "";
    const name = dmName(state.me.username, user);
    if (state.rooms.has(name)) return openRoom(name);
    state.draftDm = user;
    openRoom(name, { draft: true, title: user });
  }

  // -- the open conversation -------------------------------------------------------------

  async function openRoom(name, { draft = false, title = null } = {}) {
    state.current = name;
    if (!draft) state.draftDm = null;
    state.messages = new Map();
    state.oldest = null;
    state.typing = new Map();
    state.editing = null;
    $("messages").replaceChildren();
    renderTyping();
    const room = state.rooms.get(name);
    $("room-title").textContent =
      title || (room?.kind === "dm" ? room.with : `# ${name}`);
    $("composer").disabled = false;
    renderRooms();
    if (draft) {
      $("members").replaceChildren();
      $("online-count").textContent = "0";
      $("composer").focus();
      return;
    }
    try {
      const data = await api("GET", `${roomPath(name)}/messages?limit=${HISTORY_PAGE}`);
      if (state.current !== name) return;
      for (const message of data.messages) addEvent(message, { scroll: false });
      scrollToBottom();
      markRead();
      loadMembers();
    } catch (error) {
      toast("Could not open the room", error.message);
    }
    $("composer").focus();
  }

  async function loadOlder() {
    if (state.loadingOlder || !state.current || state.oldest === null || state.oldest <= 1) {
      return;
    }
    state.loadingOlder = true;
    const room = state.current;
    const list = $("messages");
    const before = list.scrollHeight;
    try {
      const data = await api(
        "GET", `${roomPath(room)}/messages?before=${state.oldest}&limit=${HISTORY_PAGE}`);
      if (state.current !== room) return;
      for (const message of data.messages.reverse()) addEvent(message, { scroll: false });
      list.scrollTop = list.scrollHeight - before;
    } finally {
      state.loadingOlder = false;
    }
  }

  async function loadMembers() {
    const room = state.current;
    if (!room || state.draftDm) return;
    try {
      const data = await api("GET", `${roomPath(room)}/members`);
      if (state.current !== room) return;
      state.members = data.members.map((m) => m.username);
      for (const m of data.members) {
        if (m.online) state.online.add(m.username);
        else state.online.delete(m.username);
      }
      renderMembers();
    } catch { /* the list stays as it was */ }
  }

  async function refreshPresence(room) {
    try {
      const data = await api("GET", `${roomPath(room)}/presence`);
      for (const name of data.online) state.online.add(name);
      renderRooms();
    } catch { /* a dot stays grey */ }
  }

  function renderMembers() {
    const list = $("members");
    list.replaceChildren();
    let online = 0;
    for (const name of state.members) {
      const li = document.createElement("li");
      li.dataset.user = name;
      const isOnline = state.online.has(name);
      li.dataset.online = String(isOnline);
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.dataset.online = String(isOnline);
      const label = document.createElement("span");
      label.textContent = name;
      li.append(dot, label);
      list.append(li);
      if (isOnline) online += 1;
    }
    $("online-count").textContent = String(online);
  }

  // -- messages in the list --------------------------------------------------------------

  function addEvent(event, { scroll = true } = {}) {
    if (event.room !== state.current || event.seq === undefined) return;
    if (state.messages.has(event.seq)) return; // already shown
    state.messages.set(event.seq, event);
    if (state.oldest === null || event.seq < state.oldest) state.oldest = event.seq;
    if (event.type === "message.updated" || event.type === "message.deleted") {
      applyChange(event);
      return;
    }
    const element = event.type === "message" ? renderMessage(event) : renderNotice(event);
    if (!element) return;
    if (event.type === "message" && event.client_msg_id) {
      const pending = state.pending.get(event.client_msg_id);
      if (pending && pending.el.isConnected) {
        pending.el.replaceWith(element);
        state.pending.delete(event.client_msg_id);
        regroup(element);
        return;
      }
    }
    insertBySeq(element, event.seq);
    regroup(element);
    if (scroll) scrollToBottom();
  }

  function insertBySeq(element, seq) {
    const list = $("messages");
    const after = [...list.children].find(
      (child) => child.dataset.seq !== undefined && Number(child.dataset.seq) > seq);
    if (after) list.insertBefore(element, after);
    else {
      const firstPending = list.querySelector('[data-pending="true"], [data-failed="true"]');
      if (firstPending) list.insertBefore(element, firstPending);
      else list.append(element);
    }
  }

  function renderNotice(event) {
    let text = null;
    if (event.type === "member.joined") {
      text = event.by ? `${event.by} added ${event.user}` : `${event.user} joined`;
    } else if (event.type === "member.left") {
      text = `${event.user} left`;
    }
    if (!text) return null;
    const li = document.createElement("li");
    li.className = "event";
    li.dataset.testid = "event";
    li.dataset.seq = String(event.seq);
    li.textContent = text;
    return li;
  }

  function renderMessage(message, { pending = false } = {}) {
    const li = document.createElement("li");
    li.className = "msg";
    li.dataset.testid = "message";
    li.dataset.sender = message.sender || "";
    if (pending) li.dataset.pending = "true";
    else li.dataset.seq = String(message.seq);
    li.dataset.time = message.created_at || new Date().toISOString();
    const head = document.createElement("div");
    head.className = "head";
    const sender = document.createElement("span");
    sender.className = "sender";
    sender.dataset.testid = "message-sender";
    sender.textContent = message.sender || "bot";
    const time = document.createElement("time");
    time.className = "time";
    time.dataset.testid = "message-time";
    const when = message.created_at ? new Date(message.created_at) : new Date();
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    head.append(sender, time);
    const text = document.createElement("div");
    text.className = "text";
    text.dataset.testid = "message-text";
    li.append(head, text);
    fillText(li, message);
    if (!pending && message.sender === state.me.username && !message.deleted) {
      li.append(ownActions(message.seq));
    }
    return li;
  }

  function fillText(li, message) {
    const text = li.querySelector('[data-testid="message-text"]');
    text.replaceChildren();
    li.querySelector(".edited")?.remove();
    if (message.deleted) {
      li.dataset.deleted = "true";
      text.textContent = "message deleted";
      li.querySelector(".actions")?.remove();
      return;
    }
    appendWithMentions(text, message.text || "");
    if (message.edited_at) {
      const edited = document.createElement("span");
      edited.className = "edited";
      edited.textContent = " (edited)";
      li.querySelector(".head").append(edited);
    }
  }

  function appendWithMentions(container, text) {
    // Split on @names; only the viewer's own name is marked. Text nodes only.
    const pattern = /@([a-z0-9][a-z0-9_.-]{0,31})/g;
    let last = 0;
    for (const match of text.matchAll(pattern)) {
      const name = match[1].replace(/[._-]+$/, "");
      if (name !== state.me.username) continue;
      container.append(document.createTextNode(text.slice(last, match.index)));
      const mark = document.createElement("mark");
      mark.textContent = `@${name}`;
      container.append(mark);
      last = match.index + 1 + name.length;
    }
    container.append(document.createTextNode(text.slice(last)));
  }

  function ownActions(seq) {
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(actionButton("Edit", "edit", () => startEdit(seq)),
                   actionButton("Delete", "delete", () => deleteMessage(seq)));
    return actions;
  }

  function applyChange(event) {
    const original = state.messages.get(event.target_seq);
    if (!original) return;
    if (event.type === "message.updated") {
      original.text = event.text;
      original.edited_at = event.edited_at;
    } else {
      original.text = null;
      original.deleted = true;
    }
    const element = $("messages").querySelector(
      `[data-testid="message"][data-seq="${event.target_seq}"]`);
    if (element) fillText(element, original);
  }

  function regroup(element) {
    // A message follows on from the one before it when the same sender wrote both within
    // a few minutes: its header is hidden.
    const previous = element.previousElementSibling;
    const same = previous && previous.classList.contains("msg") &&
      element.classList.contains("msg") &&
      previous.dataset.sender === element.dataset.sender &&
      Math.abs(Date.parse(element.dataset.time) - Date.parse(previous.dataset.time)) < GROUP_MS;
    element.classList.toggle("grouped", Boolean(same));
    const next = element.nextElementSibling;
    if (next && next.classList.contains("msg") && next !== element) {
      const joined = element.classList.contains("msg") &&
        next.dataset.sender === element.dataset.sender &&
        Math.abs(Date.parse(next.dataset.time) - Date.parse(element.dataset.time)) < GROUP_MS;
      next.classList.toggle("grouped", joined);
    }
  }

  function scrollToBottom() {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  }

  // -- sending, editing ------------------------------------------------------------------

  async function submitComposer() {
    const composer = $("composer");
    const text = composer.value;
    if (!text.trim() || !state.current) return;
    composer.value = "";
    autosize();
    if (state.editing !== null) {
      const seq = state.editing;
      state.editing = null;
      composer.placeholder = "Write a message";
      try {
        await api("PATCH", `${roomPath(state.current)}/messages/${seq}`, { text });
      } catch (error) {
        toast("Could not edit", error.message);
      }
      return;
    }
    send(text, newClientId());
    sendTyping(false);
  }

  function newClientId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
  }

  async function send(text, clientId, existing = null) {
    const room = state.current;
    const draftTo = state.draftDm;
    const element = existing || renderMessage(
      { sender: state.me.username, text, client_msg_id: clientId }, { pending: true });
    element.dataset.pending = "true";
    delete element.dataset.failed;
    element.querySelector('[data-testid="retry"]')?.remove();
    if (!existing) {
      $("messages").append(element);
      regroup(element);
      scrollToBottom();
    }
    state.pending.set(clientId, { room, text, el: element });
    try {
      const path = draftTo
        ? `/api/users/${encodeURIComponent(draftTo)}/messages`
        : `${roomPath(room)}/messages`;
      const message = await api("POST", path, { text, client_msg_id: clientId });
      if (draftTo) {
        state.draftDm = null;
        await loadRooms();
        if (state.current === room) renderRooms();
      }
      if (state.pending.has(clientId) && element.isConnected) {
        // The stream has not delivered it yet: the response makes it real.
        state.pending.delete(clientId);
        if (!state.messages.has(message.seq) && state.current === message.room) {
          state.messages.set(message.seq, message);
          const real = renderMessage(message);
          element.replaceWith(real);
          regroup(real);
        } else {
          element.remove();
        }
      }
    } catch (error) {
      element.dataset.failed = "true";
      delete element.dataset.pending;
      const retry = actionButton("Retry", "retry", () => send(text, clientId, element));
      retry.title = error.message;
      element.append(retry);
    }
  }

  function startEdit(seq) {
    const message = state.messages.get(seq);
    if (!message) return;
    state.editing = seq;
    const composer = $("composer");
    composer.value = message.text || "";
    composer.placeholder = "Editing: Enter saves, Escape cancels";
    autosize();
    composer.focus();
  }

  function cancelEdit() {
    state.editing = null;
    const composer = $("composer");
    composer.value = "";
    composer.placeholder = "Write a message";
    autosize();
  }

  async function deleteMessage(seq) {
    try {
      await api("DELETE", `${roomPath(state.current)}/messages/${seq}`);
    } catch (error) {
      toast("Could not delete", error.message);
    }
  }

  function autosize() {
    const composer = $("composer");
    composer.style.height = "auto";
    composer.style.height = `${Math.min(composer.scrollHeight, 160)}px`;
  }

  async function sendTyping(typing) {
    if (!state.current || state.draftDm) return;
    const now = Date.now();
    if (typing && now - state.typingSentAt < TYPING_EVERY_MS) return;
    state.typingSentAt = typing ? now : 0;
    try {
      await api("POST", `${roomPath(state.current)}/typing`, { typing });
    } catch { /* typing is best effort */ }
  }

  // -- read state ------------------------------------------------------------------------

  function markRead() {
    clearTimeout(state.readTimer);
    state.readTimer = setTimeout(async () => {
      const room = state.rooms.get(state.current);
      if (!room || document.visibilityState !== "visible") return;
      const seq = Math.max(room.last_seq || 0, ...state.messages.keys());
      if (seq <= (room.read_seq || 0) && room.unread === 0) return;
      try {
        const result = await api("POST", `${roomPath(room.name)}/read`, { seq });
        applyRead(result);
      } catch { /* the next message tries again */ }
    }, 250);
  }

  function applyRead(data) {
    if (data.room === null) {
      state.notifications.unread = data.unread;
      return;
    }
    const room = state.rooms.get(data.room);
    if (!room) return;
    room.read_seq = Math.max(room.read_seq || 0, data.read_seq);
    room.unread = data.unread;
    room.mentions = data.mentions;
    renderRooms();
  }

  // -- the stream ------------------------------------------------------------------------

  const STREAM_EVENTS = [
    "ready", "reset", "message", "message.updated", "message.deleted", "member.joined",
    "member.left", "read", "notification", "typing", "presence",
  ];

  function setConn(live) {
    const conn = $("conn");
    conn.dataset.state = live ? "live" : "reconnecting";
    conn.textContent = live ? "Live" : "Reconnecting…";
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    const query = state.lastEventId
      ? `?last_event_id=${encodeURIComponent(state.lastEventId)}` : "";
    const source = new EventSource(`/api/stream${query}`);
    state.source = source;
    source.addEventListener("open", () => setConn(true));
    source.addEventListener("error", () => {
      setConn(false);
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up for good on a non-200 (a deploy, a restart): start over,
        // from where we were, with backoff.
        source.close();
        const delay = state.backoff * (0.5 + Math.random() / 2);
        state.backoff = Math.min(state.backoff * 2, 30000);
        state.reconnectTimer = setTimeout(connect, delay);
      }
    });
    for (const type of STREAM_EVENTS) {
      source.addEventListener(type, (event) => {
        if (source !== state.source) return;
        if (event.lastEventId) state.lastEventId = event.lastEventId;
        let data;
        try { data = JSON.parse(event.data); } catch { return; }
        handle(type, data);
      });
    }
  }

  function handle(type, data) {
    switch (type) {
      case "ready": return onReady(data);
      case "reset": return onReset();
      case "message": return onMessage(data);
      case "message.updated":
      case "message.deleted":
        return addEvent(data);
      case "member.joined":
      case "member.left":
        return onMembership(data);
      case "read": return applyRead(data);
      case "notification": return onNotification(data);
      case "typing": return onTyping(data);
      case "presence": return onPresence(data);
      default: return undefined;
    }
  }

  function onReady(data) {
    state.backoff = 1000;
    setConn(true);
    let unknown = false;
    for (const info of data.rooms) {
      const room = state.rooms.get(info.room);
      if (!room) { unknown = true; continue; }
      Object.assign(room, {
        last_seq: info.last_seq, unread: info.unread, mentions: info.mentions,
        read_seq: info.read_seq, member: true,
      });
    }
    if (data.notifications) state.notifications = data.notifications;
    if (unknown) loadRooms(); else renderRooms();
  }

  async function onReset() {
    await loadRooms();
    if (state.current && !state.draftDm) openRoom(state.current);
  }

  function onMessage(message) {
    const room = state.rooms.get(message.room);
    if (!room) {
      loadRooms();
      return;
    }
    if (message.seq <= (room.last_seq || 0) && message.room !== state.current) return;
    room.last_seq = Math.max(room.last_seq || 0, message.seq);
    if (message.room === state.current) {
      addEvent(message);
      state.typing.delete(message.sender);
      renderTyping();
      if (message.sender !== state.me.username) markRead();
    } else if (message.sender !== state.me.username && message.seq > (room.read_seq || 0)) {
      room.unread = (room.unread || 0) + 1;
    }
    renderRooms();
  }

  function onMembership(event) {
    const room = state.rooms.get(event.room);
    if (room) room.last_seq = Math.max(room.last_seq || 0, event.seq);
    const mine = event.user === state.me.username;
    if (mine && (event.type === "member.left" || !room || !room.member)) loadRooms();
    if (event.room === state.current) {
      addEvent(event);
      loadMembers();
    }
  }

  function onNotification(note) {
    state.notifications.unread = (state.notifications.unread || 0) + 1;
    const title = note.title || "Notification";
    toast(title, note.body || "");
    if (document.visibilityState !== "visible" && "Notification" in window &&
        Notification.permission === "granted") {
      new Notification(title, { body: note.body || "", tag: `chat-${note.seq}` });
    }
  }

  function onTyping(event) {
    if (event.room !== state.current || event.user === state.me.username) return;
    if (event.typing) state.typing.set(event.user, Date.now() + event.expires_in * 1000);
    else state.typing.delete(event.user);
    renderTyping();
  }

  function renderTyping() {
    const now = Date.now();
    const names = [...state.typing.entries()]
      .filter(([, expiry]) => expiry > now).map(([name]) => name);
    for (const [name, expiry] of state.typing) if (expiry <= now) state.typing.delete(name);
    const typing = $("typing");
    if (names.length === 0) typing.textContent = "";
    else if (names.length === 1) typing.textContent = `${names[0]} is typing…`;
    else typing.textContent = `${names.join(", ")} are typing…`;
  }

  function onPresence(event) {
    if (event.online) state.online.add(event.user);
    else state.online.delete(event.user);
    renderRooms();
    if (event.room === state.current) renderMembers();
  }

  // -- toasts, desktop notifications -----------------------------------------------------

  function toast(title, body) {
    const element = document.createElement("div");
    element.className = "toast";
    element.dataset.testid = "toast";
    element.setAttribute("role", "status");
    const strong = document.createElement("strong");
    strong.textContent = title;
    const text = document.createElement("span");
    text.textContent = body || "";
    element.append(strong, text);
    $("toasts").append(element);
    setTimeout(() => element.remove(), 6000);
  }

  async function enableNotifications() {
    if (!("Notification" in window)) return toast("Not supported", "This browser has none.");
    const permission = await Notification.requestPermission();
    toast("Desktop notifications", permission === "granted" ? "On" : "Not allowed");
  }

  // -- wiring ----------------------------------------------------------------------------

  function bindUi() {
    $("auth").querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn(false);
    });
    $("register").addEventListener("click", () => signIn(true));
    $("logout").addEventListener("click", signOut);
    document.getElementById("new-room-form").addEventListener("submit", (event) => {
      event.preventDefault();
      joinOrCreate($("new-room").value);
    });
    document.getElementById("new-dm-form").addEventListener("submit", (event) => {
      event.preventDefault();
      openDm($("new-dm").value);
    });
    document.getElementById("composer-form").addEventListener("submit", (event) => {
      event.preventDefault();
      submitComposer();
    });
    const composer = $("composer");
    composer.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submitComposer();
      } else if (event.key === "Escape" && state.editing !== null) {
        cancelEdit();
      }
    });
    composer.addEventListener("input", () => {
      autosize();
      if (composer.value.trim() && state.editing === null) sendTyping(true);
    });
    $("messages").addEventListener("scroll", () => {
      if ($("messages").scrollTop < 40) loadOlder();
    });
    $("enable-notifications").addEventListener("click", enableNotifications);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && state.current) markRead();
    });
    setInterval(renderTyping, 1000);
  }

  document.addEventListener("DOMContentLoaded", boot);
})();
