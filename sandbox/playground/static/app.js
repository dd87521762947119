// The playground page: shows what the fake Slack holds for the person acting (long-polled), and posts what they do
// to the playground API, which signs it and sends it to the bot as Slack would.

import { escapeHtml, mrkdwn } from "./mrkdwn.js";
import { renderBlocks, stateFor } from "./blockkit.js";

const $ = (selector) => document.querySelector(selector);
const PERMALINK = /^https:\/\/[^/]+\.slack\.com\/archives\/([A-Z0-9]+)\/p(\d{10})(\d{6})/;

let config = null;
let user = "";
let channel = "";
let snapshot = { version: -1, messages: [], ephemerals: [], modal: null };
let poller = null;
let modal = null;  // { id, hash, view, values, errors, busy }
const seen = {};  // channel -> message count already seen, for the unread badges
let highlight = null;

function notice(text, kind = "info") {
  const node = $("#notice");
  node.textContent = text;
  node.className = `small ${kind}`;
}

async function api(path, body, method = "POST") {
  const response = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    notice(data.error ?? `The playground answered HTTP ${response.status}`, "error");
    throw new Error(data.error ?? String(response.status));
  }
  if (data.note) notice(data.note, "error");
  return data;
}

const channelNames = () => Object.fromEntries(config.channels.map((c) => [c.id, c.name]));
const textCtx = () => ({ names: config.names, channels: channelNames() });

// ---------------------------------------------------------------- long poll of the fake Slack

async function pollLoop() {
  const mine = new AbortController();
  poller?.abort();
  poller = mine;
  let after = -1;
  while (poller === mine) {
    try {
      const url = `${config.state_url}?user=${encodeURIComponent(user)}&after=${after}`;
      const response = await fetch(url, { signal: mine.signal, cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      if (poller !== mine) return;
      after = data.version;
      snapshot = data;
      render();
    } catch (error) {
      if (mine.signal.aborted) return;
      document.body.dataset.connection = "lost";
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

// ---------------------------------------------------------------- sidebar

function renderPeople() {
  const nav = $("#people");
  nav.replaceChildren();
  for (const person of config.people) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.user = person.id;
    button.dataset.role = person.role;
    button.setAttribute("aria-pressed", String(person.id === user));
    button.innerHTML = `@${escapeHtml(person.name)} <small>${escapeHtml(person.role)}</small>`;
    button.addEventListener("click", () => switchUser(person.id));
    nav.append(button);
  }
}

function channelsShown() {
  const known = config.channels.map((c) => ({ ...c }));
  const ids = new Set(known.map((c) => c.id));
  for (const m of [...snapshot.messages, ...snapshot.ephemerals]) {
    if (!ids.has(m.channel)) {
      ids.add(m.channel);
      known.push({ id: m.channel, name: m.channel.startsWith("D") ? `DM ${m.channel}` : m.channel, role: "other" });
    }
  }
  return known;
}

function visibleIn(id) {
  return snapshot.messages.filter((m) => m.channel === id).length
    + snapshot.ephemerals.filter((m) => m.channel === id).length;
}

function renderChannels() {
  const nav = $("#channels");
  nav.replaceChildren();
  for (const c of channelsShown()) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.channel = c.id;
    button.setAttribute("aria-current", String(c.id === channel));
    const unread = c.id === channel ? 0 : visibleIn(c.id) - (seen[c.id] ?? 0);
    button.innerHTML = `#${escapeHtml(c.name)} <small>${escapeHtml(c.role)}</small>`
      + (unread > 0 ? `<span class="badge" aria-label="${unread} new">${unread}</span>` : "");
    button.addEventListener("click", () => switchChannel(c.id));
    nav.append(button);
  }
}

function switchUser(id) {
  user = id;
  modal = null;
  snapshot = { version: -1, messages: [], ephemerals: [], modal: null };
  renderPeople();
  render();
  const person = config.people.find((p) => p.id === id);
  notice(`Acting as @${person.name} (${person.role}).`);
  pollLoop();
}

function switchChannel(id, ts = null) {
  channel = id;
  highlight = ts;
  render(true);
}

// ---------------------------------------------------------------- messages

function byTs(a, b) {
  return a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0;
}

function messageNode(m, ephemeral) {
  const node = document.createElement("article");
  node.className = `msg${ephemeral ? " ephemeral" : ""}${m.ts === highlight ? " highlight" : ""}`;
  node.dataset.ts = m.ts;
  node.dataset.channel = m.channel;
  const author = config.names[m.user] ?? "changeos";
  node.innerHTML = `<div class="avatar" aria-hidden="true">${escapeHtml(author[0].toUpperCase())}</div>
    <div class="msg-body"><div class="meta"><span class="author">${escapeHtml(author)}</span>
    <span class="app-tag">APP</span>${m.edited ? '<span class="edited">(edited)</span>' : ""}
    ${ephemeral ? '<span class="only-you">Only visible to you</span>' : ""}</div><div class="content"></div></div>`;
  const content = node.querySelector(".content");
  if (m.blocks?.length) {
    content.append(renderBlocks(m.blocks, {
      ...textCtx(),
      surface: "message",
      confirm,
      act: (element, blockId, extra) => ephemeral
        ? notice("Buttons in ephemeral messages are not wired in the playground.", "error")
        : api("/api/action", { user, channel: m.channel, ts: m.ts, action_id: element.action_id, block_id: blockId, ...extra })
          .catch(() => {}),
    }));
  } else {
    content.innerHTML = mrkdwn(m.text, textCtx());
  }
  return node;
}

function renderMessages(jump) {
  const box = $("#messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const all = snapshot.messages.filter((m) => m.channel === channel).map((m) => ({ m, ephemeral: false }))
    .concat(snapshot.ephemerals.filter((m) => m.channel === channel).map((m) => ({ m, ephemeral: true })));
  const top = all.filter(({ m }) => !m.thread_ts || m.thread_ts === m.ts).sort((a, b) => byTs(a.m, b.m));
  box.replaceChildren();
  for (const { m, ephemeral } of top) {
    const node = messageNode(m, ephemeral);
    const replies = all.filter((r) => r.m.thread_ts === m.ts && r.m.ts !== m.ts).sort((a, b) => byTs(a.m, b.m));
    if (replies.length) {
      const thread = document.createElement("div");
      thread.className = "thread";
      thread.setAttribute("aria-label", `Thread of ${m.ts}`);
      thread.innerHTML = `<div class="thread-count">${replies.length} ${replies.length === 1 ? "reply" : "replies"}</div>`;
      for (const r of replies) thread.append(messageNode(r.m, r.ephemeral));
      node.querySelector(".msg-body").append(thread);
    }
    box.append(node);
  }
  if (!top.length) box.innerHTML = '<p class="muted" style="padding: 0 20px">No messages here yet.</p>';
  seen[channel] = visibleIn(channel);
  const target = jump && highlight ? box.querySelector(`.msg[data-ts="${highlight}"]`) : null;
  if (target) target.scrollIntoView({ block: "center" });
  else if (atBottom || jump) box.scrollTop = box.scrollHeight;
}

// ---------------------------------------------------------------- the modal

function modalCtx() {
  return {
    ...textCtx(),
    surface: "modal",
    values: modal.values,
    errors: modal.errors,
    confirm,
    act: (element, blockId, extra) => api("/api/action", {
      user, view_id: modal.id, action_id: element.action_id, block_id: blockId, values: modal.values, ...extra,
    }).catch(() => {}),
    suggest: (element, blockId, query) => api("/api/suggest", {
      user, view_id: modal.id, action_id: element.action_id, block_id: blockId, value: query, values: modal.values,
    }).catch(() => ({ options: [] })),
  };
}

function drawModal() {
  const { view } = modal;
  $("#modal-title").innerHTML = escapeHtml(view.title?.text ?? "");
  $("#modal-body").replaceChildren(renderBlocks(view.blocks, modalCtx()));
  $("#modal-close").textContent = view.close?.text ?? "Cancel";
  const submit = $("#modal-submit");
  submit.hidden = !view.submit;
  submit.textContent = view.submit?.text ?? "";
  submit.disabled = false;
  $("#modal-note").textContent = "";
  $("#modal").dataset.viewId = view.id;
  $("#modal").dataset.callbackId = view.callback_id ?? "";
  $("#modal-layer").hidden = false;
}

function renderModal() {
  const view = snapshot.modal;
  if (!view) {
    modal = null;
    $("#modal-layer").hidden = true;
    return;
  }
  if (modal && modal.id === view.id && modal.hash === view.hash) return;
  const kept = modal && modal.id === view.id ? modal.values : {};
  modal = { id: view.id, hash: view.hash, view, values: stateFor(view, kept), errors: {} };
  drawModal();
}

async function submitModal() {
  if (!modal) return;
  const submit = $("#modal-submit");
  submit.disabled = true;
  const sent = modal;
  try {
    const answer = await api("/api/submit", { user, view_id: sent.id, values: sent.values });
    if (modal === sent && Object.keys(answer.errors ?? {}).length) {
      sent.errors = answer.errors;
      drawModal();
    }
  } catch {
    // the notice says what went wrong
  } finally {
    submit.disabled = false;
  }
}

async function closeModal() {
  if (modal) await api("/api/close", { user, view_id: modal.id }).catch(() => {});
}

// ---------------------------------------------------------------- confirm dialogs (client-side, as in Slack)

function confirm(spec) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = spec.title?.text ?? "Are you sure?";
  $("#confirm-text").innerHTML = spec.text?.type === "mrkdwn"
    ? mrkdwn(spec.text.text, textCtx()) : escapeHtml(spec.text?.text ?? "");
  $("#confirm-ok").textContent = spec.confirm?.text ?? "Yes";
  $("#confirm-ok").className = `btn ${spec.style === "danger" ? "danger" : "primary"}`;
  $("#confirm-deny").textContent = spec.deny?.text ?? "Cancel";
  dialog.showModal();
  return new Promise((resolve) => {
    const done = (answer) => () => { dialog.close(); resolve(answer); };
    $("#confirm-ok").onclick = done(true);
    $("#confirm-deny").onclick = done(false);
    dialog.oncancel = done(false);
  });
}

// ---------------------------------------------------------------- faults

async function fault(name) {
  const summary = name ? await api("/api/faults", { fault: name }) : await api("/api/faults", null, "DELETE");
  showFaults(summary);
}

function showFaults(summary) {
  const parts = [];
  if (summary.fail_jobs) parts.push(`${summary.fail_jobs} job(s) will fail`);
  if (summary.latency_ms) parts.push(`+${summary.latency_ms} ms per call`);
  if (summary.throttled_left) parts.push(`${summary.throttled_left} calls will get 429`);
  $("#fault-status").textContent = parts.length ? parts.join(" · ") : "No faults.";
}

// ---------------------------------------------------------------- everything

function render(jump = false) {
  const c = channelsShown().find((x) => x.id === channel);
  $("#channel-name").textContent = `#${c?.name ?? channel}`;
  $("#channel-role").textContent = c?.role ?? "";
  $("#message-box").placeholder = `Message #${c?.name ?? channel}, e.g. /changeos web-01`;
  renderChannels();
  renderMessages(jump);
  renderModal();
  document.body.dataset.version = String(snapshot.version);
}

function onDocumentClick(event) {
  const link = event.target.closest("a[href]");
  const match = link && PERMALINK.exec(link.href);
  if (match) {  // a Slack permalink: jump to the message here instead of leaving for slack.com
    event.preventDefault();
    switchChannel(match[1], `${match[2]}.${match[3]}`);
    return;
  }
  const channelLink = event.target.closest(".channel-link[data-channel]");
  if (channelLink) switchChannel(channelLink.dataset.channel);
}

async function main() {
  config = await (await fetch("/api/config")).json();
  user = config.people.find((p) => p.role === "requester").id;
  channel = config.channels[0].id;
  $("#links").innerHTML = `The real bot: <a href="${escapeHtml(config.bot_url)}/healthz" target="_blank">health</a>`;
  renderPeople();
  $("#composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = $("#message-box");
    const line = box.value.trim();
    if (!line) return;
    try {
      await api("/api/command", { user, channel, line });
      box.value = "";
      notice(`Sent ${line.split(" ")[0]} as @${config.names[user]}.`);
    } catch {
      // the notice says why
    }
  });
  for (const button of document.querySelectorAll("#faults button")) {
    button.addEventListener("click", () => fault(button.dataset.fault).catch(() => {}));
  }
  $("#modal-submit").addEventListener("click", submitModal);
  $("#modal-close").addEventListener("click", closeModal);
  $("#modal-x").addEventListener("click", closeModal);
  document.addEventListener("click", onDocumentClick);
  api("/api/faults", null, "GET").then(showFaults).catch(() => {});
  render();
  pollLoop();
  document.body.dataset.ready = "true";
}

main();
