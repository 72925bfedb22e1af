// ringchat's web client: one IRC connection over WebSocket (IRCv3 text.ircv3.net,
// one line per message), a buffer per channel and private conversation, and the
// DOM that shows them; SASL PLAIN login and account registration when the user gives
// a password; history (IRCv3 chathistory) on joining, after a reconnect, and for
// scrolling back. Plain JavaScript, no build step, nothing loaded from elsewhere.
// State lives in `buffers`; `render*` functions redraw from it.
"use strict";

const $ = (id) => document.getElementById(id);
const SERVER_BUFFER = "*server*";
// Capabilities asked for when the server offers them: time stamps from the server,
// every prefix of a member, our own messages echoed back in the server's order, and
// history (chathistory answers in a batch; msgids to tell a message seen twice).
// `sasl` and `draft/account-registration` are asked for only with a password.
const WANTED_CAPS = ["server-time", "multi-prefix", "echo-message", "batch", "message-tags", "draft/chathistory"];
// Live lines kept per buffer; past it the oldest go, from memory and the page.
// Older pages the user asks for ("load older") come on top of it.
const MAX_LINES = 1000;
// Messages asked for on joining (and per "load older"), and per catch-up request.
const HISTORY_PAGE = 50;
const CATCH_UP_PAGE = 100;

const state = {
  socket: null,
  nick: "",
  wantedNick: "",
  channels: [],          // what to join (again, after a reconnect)
  caps: new Set(),
  registered: false,
  quitting: false,       // the user asked to leave: no reconnect
  retryDelay: 1000,
  retryTimer: null,
  prefixes: { modes: "ov", symbols: "@+" }, // ISUPPORT PREFIX, updated on 005
  chantypes: "#&",
  historyLimit: Infinity, // ISUPPORT CHATHISTORY: most messages per request
  active: SERVER_BUFFER,
  account: "",           // the account to log in to or register (the form's nick)
  password: "",          // kept in memory only, to log in again after a reconnect
  registering: false,    // REGISTER instead of SASL, until it succeeds once
  loggedIn: "",          // the account the server says we are logged in to (900)
  batches: new Map(),    // open BATCH reference -> {type, target, messages}
};
const buffers = new Map();

// ---- IRC lines -------------------------------------------------------------------

/** Parses one IRC line into {tags, source, nick, command, params}. */
function parseLine(line) {
  const message = { tags: {}, source: "", nick: "", command: "", params: [] };
  let rest = line;
  if (rest.startsWith("@")) {
    const end = rest.indexOf(" ");
    for (const tag of rest.slice(1, end).split(";")) {
      const eq = tag.indexOf("=");
      if (eq < 0) message.tags[tag] = "";
      else message.tags[tag.slice(0, eq)] = unescapeTag(tag.slice(eq + 1));
    }
    rest = rest.slice(end + 1).trimStart();
  }
  if (rest.startsWith(":")) {
    const end = rest.indexOf(" ");
    message.source = rest.slice(1, end);
    message.nick = message.source.split("!")[0];
    rest = rest.slice(end + 1).trimStart();
  }
  while (rest.length > 0) {
    if (rest.startsWith(":")) {
      message.params.push(rest.slice(1));
      break;
    }
    const end = rest.indexOf(" ");
    if (end < 0) {
      message.params.push(rest);
      break;
    }
    message.params.push(rest.slice(0, end));
    rest = rest.slice(end + 1).trimStart();
  }
  message.command = (message.params.shift() || "").toUpperCase();
  return message;
}

function unescapeTag(value) {
  const map = { ":": ";", s: " ", "\\": "\\", r: "\r", n: "\n" };
  return value.replace(/\\(.)?/g, (_, c) => (c === undefined ? "" : map[c] ?? c));
}

function send(line) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(line);
}

// ---- buffers ---------------------------------------------------------------------

function isChannel(name) {
  return name.length > 0 && state.chantypes.includes(name[0]);
}

function key(name) {
  return name.toLowerCase();
}

/** The buffer for a channel or nick, created on first use. */
function buffer(name) {
  let found = buffers.get(key(name));
  if (!found) {
    found = {
      name,
      kind: name === SERVER_BUFFER ? "server" : isChannel(name) ? "channel" : "query",
      lines: [],
      members: new Map(), // nick -> prefix symbols, channels only
      topic: "",
      unread: 0,
      highlight: false,
      joined: false,
      msgids: new Set(), // of `lines`, to show a message once
      // A CHATHISTORY request in flight ({subcommand, limit}); `complete` once the
      // server has nothing older (or keeps nothing for this target).
      history: { pending: null, complete: false },
    };
    buffers.set(key(name), found);
    renderBuffers();
  }
  return found;
}

/** Adds a line to a buffer and shows it (or counts it unread). */
function addLine(name, entry) {
  const target = buffer(name);
  if (entry.msgid && target.msgids.has(entry.msgid)) return;
  if (entry.msgid) target.msgids.add(entry.msgid);
  entry.time = entry.time || new Date();
  target.lines.push(entry);
  if (target.lines.length > MAX_LINES) target.msgids.delete(target.lines.shift().msgid);
  if (key(name) === key(state.active) && document.visibilityState !== "hidden") {
    appendMessage(entry);
  } else if (entry.kind === "message" || entry.kind === "action") {
    target.unread += 1;
    target.highlight ||= entry.mention || target.kind === "query";
    renderBuffers();
  }
  if (key(name) === key(state.active)) {
    const list = $("messages");
    while (list.children.length > MAX_LINES) list.firstChild.remove();
  }
}

function switchTo(name) {
  const target = buffer(name);
  state.active = target.name;
  target.unread = 0;
  target.highlight = false;
  renderBuffers();
  renderMessages();
  renderMembers();
  renderTopic();
  renderLoadOlder();
  $("sidebar").classList.remove("open");
  $("input").focus();
}

function closeBuffer(name) {
  if (key(name) === key(SERVER_BUFFER)) return;
  buffers.delete(key(name));
  if (key(state.active) === key(name)) switchTo(SERVER_BUFFER);
  else renderBuffers();
}

// ---- rendering -------------------------------------------------------------------

/** A nick's colour: a hue from a hash of its lowercased name, stable across sessions. */
function nickColour(nick) {
  let hash = 0;
  for (const c of nick.toLowerCase()) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360}, 55%, 45%)`;
}

function timeText(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function appendMessage(entry) {
  const list = $("messages");
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const item = document.createElement("li");
  item.className = `msg ${entry.kind}${entry.mention ? " mention" : ""}`;
  const time = document.createElement("time");
  time.dateTime = entry.time.toISOString();
  time.textContent = timeText(entry.time);
  item.append(time);
  if (entry.nick) {
    const nick = document.createElement("span");
    nick.className = "nick";
    nick.style.color = nickColour(entry.nick);
    nick.textContent = entry.kind === "action" ? `* ${entry.nick}` : entry.nick;
    item.append(nick);
  }
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = entry.text;
  item.append(text);
  list.append(item);
  if (stick) list.scrollTop = list.scrollHeight;
}

/** Redraws the active buffer's lines, at the bottom, or `fromBottom` pixels above it
 * (so lines put on top do not move what the user is reading). */
function renderMessages(fromBottom = 0) {
  const list = $("messages");
  list.replaceChildren();
  for (const entry of buffer(state.active).lines) appendMessage(entry);
  list.scrollTop = list.scrollHeight - list.clientHeight - fromBottom;
}

/** The "load older" control: for a channel or conversation with older history. */
function renderLoadOlder() {
  const target = buffer(state.active);
  const button = $("load-older");
  button.hidden = target.kind === "server" || !historyEnabled() || target.history.complete;
  button.disabled = target.history.pending !== null;
  button.textContent = button.disabled ? "Loading…" : "Load older messages";
}

function renderBuffers() {
  const list = $("buffers");
  list.replaceChildren();
  for (const target of buffers.values()) {
    const item = document.createElement("li");
    item.dataset.name = target.name;
    if (key(target.name) === key(state.active)) item.classList.add("active");
    if (target.highlight) item.classList.add("highlight");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = target.kind === "server" ? "server" : target.name;
    const unread = document.createElement("span");
    unread.className = "unread";
    unread.textContent = target.unread > 0 ? String(target.unread) : "";
    item.append(name, unread);
    item.addEventListener("click", () => switchTo(target.name));
    list.append(item);
  }
}

/** Rank of a member's highest prefix: ops first, then voiced, then the rest. */
function rank(prefix) {
  const at = prefix ? state.prefixes.symbols.indexOf(prefix[0]) : -1;
  return at < 0 ? state.prefixes.symbols.length : at;
}

function renderMembers() {
  const target = buffer(state.active);
  const list = $("members");
  list.replaceChildren();
  const shown = target.kind === "channel";
  $("members-pane").hidden = !shown && window.matchMedia("(min-width: 721px)").matches;
  $("toggle-members").hidden = !shown;
  if (!shown) {
    $("member-count").textContent = "";
    return;
  }
  const members = [...target.members.entries()].sort(
    ([a, pa], [b, pb]) => rank(pa) - rank(pb) || a.localeCompare(b, undefined, { sensitivity: "base" }),
  );
  $("member-count").textContent = `(${members.length})`;
  for (const [nick, prefix] of members) {
    const item = document.createElement("li");
    item.dataset.nick = nick;
    const symbol = document.createElement("span");
    symbol.className = "prefix";
    symbol.textContent = prefix ? prefix[0] : "";
    const name = document.createElement("span");
    name.textContent = nick;
    name.style.color = nickColour(nick);
    item.append(symbol, name);
    item.addEventListener("dblclick", () => switchTo(nick));
    list.append(item);
  }
}

function renderTopic() {
  const target = buffer(state.active);
  $("buffer-name").textContent = target.kind === "server" ? "server" : target.name;
  $("topic").textContent = target.topic;
  $("topic").title = target.topic;
}

function renderConnection(text) {
  $("connection").textContent = text;
}

/** "as nick", and the account when logged in. */
function renderIdentity() {
  const account = !state.loggedIn ? "" : isMe(state.loggedIn) ? ", logged in" : `, logged in as ${state.loggedIn}`;
  renderConnection(`as ${state.nick}${account}`);
}

/** The connect form again, with `text` (in red when `failed`). */
function showForm(text, failed) {
  $("connect").hidden = false;
  $("chat").hidden = true;
  $("connect-status").textContent = text;
  $("connect-status").classList.toggle("error", failed);
}

// ---- incoming --------------------------------------------------------------------

function isMe(nick) {
  return nick.toLowerCase() === state.nick.toLowerCase();
}

function serverLine(text, kind = "server") {
  addLine(SERVER_BUFFER, { kind, text });
}

/** Splits a NAMES entry into its prefix symbols and its nick (multi-prefix aware). */
function splitPrefix(entry) {
  let at = 0;
  while (at < entry.length && state.prefixes.symbols.includes(entry[at])) at += 1;
  return [entry.slice(0, at), entry.slice(at).split("!")[0]];
}

function renameEverywhere(from, to) {
  for (const target of buffers.values()) {
    if (target.members.has(from)) {
      const prefix = target.members.get(from);
      target.members.delete(from);
      target.members.set(to, prefix);
      addLine(target.name, { kind: "event", text: `${from} is now known as ${to}` });
    }
  }
  const query = buffers.get(key(from));
  if (query && query.kind === "query") {
    buffers.delete(key(from));
    query.name = to;
    buffers.set(key(to), query);
    if (key(state.active) === key(from)) state.active = to;
  }
  renderBuffers();
  renderMembers();
}

function applyModes(channel, modes, args) {
  const target = buffer(channel);
  let adding = true;
  for (const mode of modes) {
    if (mode === "+" || mode === "-") {
      adding = mode === "+";
      continue;
    }
    const rankAt = state.prefixes.modes.indexOf(mode);
    if (rankAt < 0) {
      // Modes with an argument (other than prefixes) use one up; skipped here.
      if ("kbeIlfj".includes(mode) && (adding || mode !== "l")) args.shift();
      continue;
    }
    const nick = args.shift();
    if (!nick || !target.members.has(nick)) continue;
    const symbol = state.prefixes.symbols[rankAt];
    let prefix = target.members.get(nick).replace(symbol, "");
    if (adding) {
      prefix = [...(prefix + symbol)].sort((a, b) => rank(a) - rank(b)).join("");
    }
    target.members.set(nick, prefix);
  }
}

const handlers = {
  PING(m) {
    send(`PONG :${m.params[0] ?? ""}`);
  },
  CAP(m) {
    const sub = (m.params[1] || "").toUpperCase();
    if (state.registered) return; // CAP NEW/DEL (cap-notify): nothing to change
    if (sub === "LS") {
      const wanted = [...WANTED_CAPS];
      if (state.password) wanted.push(state.registering ? "draft/account-registration" : "sasl");
      for (const cap of m.params[m.params.length - 1].split(" ")) {
        const [name, value] = cap.split("=");
        const plainOffered = name !== "sasl" || value === undefined || value.split(",").includes("PLAIN");
        if (wanted.includes(name) && plainOffered) state.caps.add(name);
      }
      if (m.params[2] !== "*") {
        if (state.caps.size > 0) send(`CAP REQ :${[...state.caps].join(" ")}`);
        else logIn();
      }
    } else if (sub === "ACK" || sub === "NAK") {
      if (sub === "NAK") state.caps.clear();
      logIn();
    }
  },
  AUTHENTICATE(m) {
    if (m.params[0] !== "+") return;
    // SASL PLAIN: no authorization identity, the account, the password; base64 in
    // 400-byte lines, and "+" after a full last line.
    const encoded = base64(`\0${state.account}\0${state.password}`);
    for (let at = 0; at < encoded.length; at += 400) send(`AUTHENTICATE ${encoded.slice(at, at + 400)}`);
    if (encoded.length % 400 === 0) send("AUTHENTICATE +");
  },
  "900"(m) {
    state.loggedIn = m.params[2] ?? "";
    if (state.registered) renderIdentity();
  },
  "901"() {
    state.loggedIn = "";
    renderIdentity();
  },
  "903"() {
    if (!state.registered) send("CAP END");
  },
  "902": saslFailed,
  "904": saslFailed,
  "905": saslFailed,
  "906": saslFailed,
  "908"() {}, // the mechanisms the server has; its 904 follows
  REGISTER(m) {
    if (m.params[0] !== "SUCCESS") return accountFailed(`Registration failed: ${m.params[m.params.length - 1]}`);
    state.registering = false;
    $("register").checked = false;
    if (!state.registered) send("CAP END");
  },
  FAIL(m) {
    const [command, code] = m.params;
    const text = m.params[m.params.length - 1];
    if (command === "REGISTER") accountFailed(`Registration failed: ${text}`);
    else if (command === "CHATHISTORY") historyFailed(code, m.params[3] ?? "", text);
    else serverLine(`${command}: ${text}`, "error");
  },
  BATCH(m) {
    const [reference, type, target] = m.params;
    const id = reference.slice(1);
    if (reference.startsWith("+")) {
      state.batches.set(id, { type, target, messages: [] });
      return;
    }
    const batch = state.batches.get(id);
    state.batches.delete(id);
    if (batch && batch.type === "chathistory") historyArrived(batch.target, batch.messages);
  },
  "001"(m) {
    state.nick = m.params[0];
    state.registered = true;
    state.retryDelay = 1000;
    renderIdentity();
    $("connect").hidden = true;
    $("chat").hidden = false;
    serverLine(m.params[m.params.length - 1]);
    const channels = new Set(state.channels);
    for (const target of buffers.values()) {
      if (target.kind === "channel") channels.add(target.name);
      if (target.kind === "query") catchUp(target.name); // channels catch up on JOIN
    }
    if (channels.size > 0) send(`JOIN ${[...channels].join(",")}`);
  },
  "005"(m) {
    for (const token of m.params.slice(1, -1)) {
      const [name, value = ""] = token.split("=");
      const found = /^\(([^)]*)\)(.*)$/.exec(value);
      if (name === "PREFIX" && found) state.prefixes = { modes: found[1], symbols: found[2] };
      if (name === "CHANTYPES" && value) state.chantypes = value;
      if (name === "CHATHISTORY") state.historyLimit = Number(value) > 0 ? Number(value) : Infinity;
    }
  },
  "332"(m) {
    buffer(m.params[1]).topic = m.params[2] ?? "";
    if (key(m.params[1]) === key(state.active)) renderTopic();
  },
  "331"(m) {
    buffer(m.params[1]).topic = "";
    if (key(m.params[1]) === key(state.active)) renderTopic();
  },
  "353"(m) {
    const target = buffer(m.params[2]);
    if (!target.namesPending) {
      target.members.clear();
      target.namesPending = true;
    }
    for (const entry of (m.params[3] || "").split(" ").filter(Boolean)) {
      const [prefix, nick] = splitPrefix(entry);
      target.members.set(nick, prefix);
    }
  },
  "366"(m) {
    const target = buffer(m.params[1]);
    target.namesPending = false;
    if (key(target.name) === key(state.active)) renderMembers();
  },
  "433"(m) {
    if (!state.registered) {
      state.wantedNick += "_";
      send(`NICK ${state.wantedNick}`);
    }
    serverLine(`${m.params[1]}: ${m.params[2]}`, "error");
  },
  JOIN(m) {
    const channel = m.params[0];
    const target = buffer(channel);
    if (isMe(m.nick)) {
      target.joined = true;
      target.members.clear();
      catchUp(channel);
      if (!state.channels.some((name) => key(name) === key(channel))) state.channels.push(channel);
      if (state.pendingSwitch === key(channel) || key(state.active) === key(SERVER_BUFFER)) {
        state.pendingSwitch = null;
        switchTo(channel);
      }
    }
    target.members.set(m.nick, "");
    addLine(channel, { kind: "event", text: `${m.nick} joined`, time: m.time });
    if (key(channel) === key(state.active)) renderMembers();
  },
  PART(m) {
    const channel = m.params[0];
    const reason = m.params[1] ? ` (${m.params[1]})` : "";
    if (isMe(m.nick)) {
      state.channels = state.channels.filter((name) => key(name) !== key(channel));
      closeBuffer(channel);
      return;
    }
    buffer(channel).members.delete(m.nick);
    addLine(channel, { kind: "event", text: `${m.nick} left${reason}`, time: m.time });
    if (key(channel) === key(state.active)) renderMembers();
  },
  KICK(m) {
    const [channel, victim, reason = ""] = m.params;
    const target = buffer(channel);
    target.members.delete(victim);
    addLine(channel, { kind: "event", text: `${victim} was kicked by ${m.nick} (${reason})`, time: m.time });
    if (isMe(victim)) {
      target.joined = false;
      state.channels = state.channels.filter((name) => key(name) !== key(channel));
    }
    if (key(channel) === key(state.active)) renderMembers();
  },
  QUIT(m) {
    const reason = m.params[0] ? ` (${m.params[0]})` : "";
    for (const target of buffers.values()) {
      if (target.members.delete(m.nick)) {
        addLine(target.name, { kind: "event", text: `${m.nick} quit${reason}`, time: m.time });
      }
    }
    renderMembers();
  },
  NICK(m) {
    const to = m.params[0];
    if (isMe(m.nick)) {
      state.nick = to;
      renderIdentity();
    }
    renameEverywhere(m.nick, to);
  },
  TOPIC(m) {
    const [channel, topic = ""] = m.params;
    buffer(channel).topic = topic;
    addLine(channel, { kind: "event", text: `${m.nick} set the topic: ${topic}`, time: m.time });
    if (key(channel) === key(state.active)) renderTopic();
  },
  MODE(m) {
    const [target, modes = "", ...args] = m.params;
    if (!isChannel(target)) return;
    applyModes(target, modes, args);
    addLine(target, { kind: "event", text: `${m.nick} set mode ${[modes, ...args].join(" ")}`, time: m.time });
    if (key(target) === key(state.active)) renderMembers();
  },
  PRIVMSG(m) {
    message(m, "message");
  },
  NOTICE(m) {
    if (!m.nick.includes(".") && m.source.includes("!")) message(m, "notice");
    else serverLine(m.params[m.params.length - 1]);
  },
  ERROR(m) {
    serverLine(m.params[0] ?? "closing", "error");
  },
};

/** A PRIVMSG or NOTICE: to a channel, or a private conversation with its sender. */
function message(m, kind) {
  const found = messageLine(m, kind);
  if (found) addLine(found.where, found.entry);
}

/** The buffer a PRIVMSG or NOTICE goes to and the line it shows there (null for CTCP
 * other than ACTION). */
function messageLine(m, kind) {
  const [to, body = ""] = m.params;
  const fromMe = isMe(m.nick);
  const where = isChannel(to) ? to : fromMe ? to : m.nick;
  let text = body;
  const action = /^\x01ACTION (.*)\x01?$/.exec(body);
  if (action) {
    kind = "action";
    text = action[1].replace(/\x01$/, "");
  } else if (body.startsWith("\x01")) {
    return null; // other CTCP is not shown
  }
  const mention = !fromMe && new RegExp(`\\b${escapeRegExp(state.nick)}\\b`, "i").test(text);
  return { where, entry: { kind, nick: m.nick, text, mention, time: m.time, msgid: m.tags.msgid } };
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function receive(line) {
  const m = parseLine(line);
  m.time = m.tags.time ? new Date(m.tags.time) : new Date();
  const batch = state.batches.get(m.tags.batch);
  if (batch) {
    batch.messages.push(m);
    return;
  }
  const handler = handlers[m.command];
  if (handler) {
    handler(m);
  } else if (/^\d{3}$/.test(m.command)) {
    // Other numerics: their text, in the server buffer (errors in red).
    const text = m.params.slice(1).join(" ");
    serverLine(text, m.command[0] === "4" || m.command[0] === "5" ? "error" : "server");
  }
}

// ---- accounts: SASL PLAIN login, IRCv3 account registration ----------------------

/** base64 of a text's UTF-8 bytes. */
function base64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

/** After capability negotiation: registers the account or logs in to it when the user
 * gave a password (CAP END follows REGISTER SUCCESS or 903), else ends it at once. */
function logIn() {
  if (!state.password) {
    send("CAP END");
  } else if (state.registering) {
    if (!state.caps.has("draft/account-registration")) return accountFailed("This server does not offer account registration.");
    send(`REGISTER ${state.account} * :${state.password}`);
  } else {
    if (!state.caps.has("sasl")) return accountFailed("This server does not offer password login (SASL PLAIN).");
    send("AUTHENTICATE PLAIN");
  }
}

function saslFailed(m) {
  accountFailed(`Login to account ${state.account} failed: ${m.params[m.params.length - 1]}`);
}

/** A login or registration the server refused: said on the form, and no reconnect
 * (connecting without the account would only lose the nick to its owner). */
function accountFailed(text) {
  if (state.registered) return serverLine(text, "error");
  state.quitting = true;
  send("QUIT");
  showForm(text, true);
}

// ---- history: IRCv3 chathistory ------------------------------------------------------

/** History needs its batches, and msgids to show each message once. */
function historyEnabled() {
  return ["draft/chathistory", "batch", "message-tags"].every((cap) => state.caps.has(cap));
}

/** On joining a channel, reconnecting or opening a conversation: what was said since
 * the newest message shown, or the latest page when none is. */
function catchUp(name) {
  const target = buffer(name);
  const newest = target.lines.findLast((entry) => entry.msgid);
  if (newest) requestHistory(target, "AFTER", `timestamp=${newest.time.toISOString()}`, CATCH_UP_PAGE);
  else requestHistory(target, "LATEST", "*", HISTORY_PAGE);
}

/** The page before the oldest message the active buffer shows. */
function loadOlder() {
  const target = buffer(state.active);
  if (target.history.complete) return;
  const oldest = target.lines.find((entry) => entry.msgid) ?? target.lines[0];
  const reference = oldest?.msgid ? `msgid=${oldest.msgid}` : `timestamp=${(oldest?.time ?? new Date()).toISOString()}`;
  requestHistory(target, "BEFORE", reference, HISTORY_PAGE);
}

/** Sends one CHATHISTORY request for a buffer; one at a time per buffer. */
function requestHistory(target, subcommand, reference, limit) {
  if (!historyEnabled() || target.kind === "server" || target.history.pending) return;
  const count = Math.min(limit, state.historyLimit);
  target.history.pending = { subcommand, limit: count };
  send(`CHATHISTORY ${subcommand} ${target.name} ${reference} ${count}`);
  if (key(target.name) === key(state.active)) renderLoadOlder();
}

/** A `chathistory` batch: its messages go into the buffer in time order, each once. */
function historyArrived(name, messages) {
  const target = buffer(name);
  const request = target.history.pending; // null for one the user typed (/quote)
  target.history.pending = null;
  const entries = [];
  for (const m of messages) {
    if (m.command !== "PRIVMSG" && m.command !== "NOTICE") continue;
    const found = messageLine(m, m.command === "PRIVMSG" ? "message" : "notice");
    if (found) entries.push(found.entry);
  }
  merge(target, entries, request?.subcommand === "BEFORE");
  const full = request !== null && messages.length >= request.limit;
  // A full catch-up page: more were said while away; ask from the last one. A short
  // page of older messages: there are no more.
  if (request?.subcommand === "AFTER" && full) {
    requestHistory(target, "AFTER", `msgid=${messages[messages.length - 1].tags.msgid}`, CATCH_UP_PAGE);
  } else if (request && request.subcommand !== "AFTER" && !full) {
    target.history.complete = true;
  }
  if (key(target.name) === key(state.active)) renderLoadOlder();
}

/** FAIL CHATHISTORY: for a target the server keeps nothing of for us (a conversation,
 * on a server that keeps none or while not logged in; a channel left) there is simply
 * no history, said nowhere; other codes are shown. */
function historyFailed(code, name, text) {
  const target = buffers.get(key(name));
  for (const other of target ? [target] : buffers.values()) other.history.pending = null;
  if (target && code === "INVALID_TARGET") target.history.complete = true;
  else serverLine(`history: ${text}`, "error");
  renderLoadOlder();
}

/** Puts history lines into a buffer in time order, skipping those it has (by msgid).
 * Of lines with the same time, an older page's go first, a newer one's after. */
function merge(target, entries, olderPage) {
  const fresh = entries.filter((entry) => entry.msgid && !target.msgids.has(entry.msgid));
  if (fresh.length === 0) return;
  const list = $("messages");
  const fromBottom = list.scrollHeight - list.clientHeight - list.scrollTop;
  const merged = [];
  let next = 0;
  for (const line of target.lines) {
    while (next < fresh.length && (olderPage ? fresh[next].time <= line.time : fresh[next].time < line.time)) {
      merged.push(fresh[next++]);
    }
    merged.push(line);
  }
  merged.push(...fresh.slice(next));
  target.lines = merged;
  for (const entry of fresh) target.msgids.add(entry.msgid);
  if (key(target.name) === key(state.active)) renderMessages(fromBottom);
}

// ---- outgoing: what the user types -----------------------------------------------

/** Sends a message and, without echo-message, shows it at once. */
function say(target, text, action = false) {
  const body = action ? `\x01ACTION ${text}\x01` : text;
  send(`PRIVMSG ${target} :${body}`);
  if (!state.caps.has("echo-message")) {
    addLine(target, { kind: action ? "action" : "message", nick: state.nick, text });
  }
}

const commands = {
  join: (args) => {
    const channel = args[0];
    if (!channel) return usage("/join #channel");
    state.pendingSwitch = key(isChannel(channel) ? channel : `#${channel}`);
    send(`JOIN ${isChannel(channel) ? channel : `#${channel}`}${args[1] ? ` ${args[1]}` : ""}`);
  },
  part: (args) => {
    const channel = args[0] && isChannel(args[0]) ? args.shift() : state.active;
    if (!isChannel(channel)) return closeBuffer(channel);
    send(`PART ${channel}${args.length ? ` :${args.join(" ")}` : ""}`);
  },
  msg: (args) => {
    const [target, ...words] = args;
    if (!target || words.length === 0) return usage("/msg nick message");
    if (!isChannel(target)) openQuery(target);
    say(target, words.join(" "));
  },
  query: (args) => (args[0] ? openQuery(args[0]) : usage("/query nick")),
  me: (args) => say(state.active, args.join(" "), true),
  nick: (args) => (args[0] ? send(`NICK ${args[0]}`) : usage("/nick newnick")),
  topic: (args) =>
    args.length ? send(`TOPIC ${state.active} :${args.join(" ")}`) : send(`TOPIC ${state.active}`),
  notice: (args) => (args.length > 1 ? send(`NOTICE ${args[0]} :${args.slice(1).join(" ")}`) : usage("/notice nick text")),
  whois: (args) => (args[0] ? send(`WHOIS ${args[0]}`) : usage("/whois nick")),
  away: (args) => send(args.length ? `AWAY :${args.join(" ")}` : "AWAY"),
  close: () => (isChannel(state.active) ? commands.part([]) : closeBuffer(state.active)),
  quit: (args) => {
    state.quitting = true;
    send(`QUIT :${args.join(" ") || "leaving"}`);
  },
  quote: (args) => send(args.join(" ")),
  raw: (args) => send(args.join(" ")),
  help: () =>
    serverLine(
      "commands: /join #c, /part [#c] [reason], /msg nick text, /query nick, /me action, " +
        "/nick new, /topic [text], /notice nick text, /whois nick, /away [text], /close, /quit [reason], /quote LINE",
    ),
};

/** Shows the conversation with `nick`; a new one starts with its history. */
function openQuery(nick) {
  const isNew = !buffers.has(key(nick));
  switchTo(nick);
  if (isNew) catchUp(nick);
}

function usage(text) {
  addLine(state.active, { kind: "error", text: `usage: ${text}` });
}

function submit(text) {
  if (!text.trim()) return;
  if (text.startsWith("/") && !text.startsWith("//")) {
    const [name, ...args] = text.slice(1).split(" ").filter((word, at) => at === 0 || word !== "");
    const command = commands[name.toLowerCase()];
    if (command) command(args);
    else addLine(state.active, { kind: "error", text: `unknown command /${name} (try /help)` });
    return;
  }
  if (key(state.active) === key(SERVER_BUFFER)) {
    addLine(SERVER_BUFFER, { kind: "error", text: "this is the server buffer: /join a channel or /quote a line" });
    return;
  }
  say(state.active, text.startsWith("//") ? text.slice(1) : text);
}

// ---- the connection --------------------------------------------------------------

function serverUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/`;
}

function connect() {
  clearTimeout(state.retryTimer);
  state.registered = false;
  state.loggedIn = "";
  state.caps.clear();
  state.batches.clear();
  for (const target of buffers.values()) target.history.pending = null;
  state.wantedNick = state.wantedNick || state.nick;
  $("connect-status").textContent = "Connecting…";
  $("connect-status").classList.remove("error");
  renderConnection("connecting…");
  const socket = new WebSocket(serverUrl(), ["text.ircv3.net"]);
  state.socket = socket;
  socket.addEventListener("open", () => {
    send("CAP LS 302");
    send(`NICK ${state.wantedNick}`);
    send(`USER ${state.wantedNick.replace(/[^A-Za-z0-9]/g, "") || "web"} 0 * :ringchat web client`);
  });
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") receive(event.data);
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket) return;
    state.socket = null;
    for (const target of buffers.values()) target.members.clear();
    renderMembers();
    if (state.quitting) {
      renderConnection("disconnected");
      serverLine("disconnected");
      return;
    }
    const delay = state.retryDelay;
    state.retryDelay = Math.min(state.retryDelay * 2, 30000);
    renderConnection(`reconnecting in ${Math.round(delay / 1000)} s`);
    serverLine(`connection lost; reconnecting in ${Math.round(delay / 1000)} s`, "error");
    $("connect-status").textContent = `Connection lost; retrying in ${Math.round(delay / 1000)} s`;
    state.retryTimer = setTimeout(connect, delay);
  });
}

// ---- wiring ----------------------------------------------------------------------

$("connect").addEventListener("submit", (event) => {
  event.preventDefault();
  state.nick = $("nick").value.trim();
  state.wantedNick = state.nick;
  state.channels = $("channels")
    .value.split(/[\s,]+/)
    .filter(Boolean)
    .map((name) => (isChannel(name) ? name : `#${name}`));
  state.account = state.nick;
  state.password = $("password").value;
  state.registering = $("register").checked;
  state.quitting = false;
  localStorage.setItem("ringchat.nick", state.nick);
  localStorage.setItem("ringchat.channels", state.channels.join(", "));
  buffer(SERVER_BUFFER);
  state.active = SERVER_BUFFER;
  connect();
});

$("compose").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("input");
  submit(input.value);
  input.value = "";
});

$("register").addEventListener("change", () => ($("password").required = $("register").checked));
$("load-older").addEventListener("click", loadOlder);
$("messages").addEventListener("scroll", (event) => {
  const list = event.target;
  if (list.scrollTop <= 0 && list.scrollHeight > list.clientHeight) loadOlder();
});
$("toggle-sidebar").addEventListener("click", () => $("sidebar").classList.toggle("open"));
$("toggle-members").addEventListener("click", () => $("members-pane").classList.toggle("open"));
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") switchTo(state.active);
});

$("nick").value = localStorage.getItem("ringchat.nick") || "";
$("channels").value = localStorage.getItem("ringchat.channels") || $("channels").value;
