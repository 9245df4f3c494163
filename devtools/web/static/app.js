// ws-cognito browser client: plain JavaScript, no build step, no libraries.
// Everything it needs (WebSocket URL, region, pool, app client, hosted UI
// domain, timers) comes from /config.json, written by whatever serves the page.
// Tokens live in memory and sessionStorage, never in localStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKENS_KEY = "ws-cognito.tokens";
const PKCE_KEY = "ws-cognito.pkce";
const SEEN_MAX = 2000;

const state = {
  config: null,
  tokens: null,          // {accessToken, idToken, refreshToken, expiresAt (ms)}
  ws: null,              // the current socket
  wanted: false,         // the user wants to be connected: reconnect after any close
  attempt: 0,            // reconnect attempts since the last good connection
  timers: {},
  seen: new Set(),       // messageIds already shown
  seenOrder: [],
  topics: new Set(),
  seqs: {},              // topic -> the last sequence number seen (topics that keep history)
  connectionId: null,    // this socket's id (whoami): what the next connection resumes
  nextId: 1,
  counters: {dupes: 0, keepalives: 0, renewals: 0},
};

// ------------------------------------------------------------------ helpers
function b64urlDecode(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  return new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)));
}

function b64urlEncode(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function claims(jwt) {
  try { return JSON.parse(b64urlDecode(jwt.split(".")[1])); } catch (e) { return {}; }
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
}

function show(data) {
  return typeof data === "string" ? data : JSON.stringify(data);
}

function addLine(listId, parts, className) {
  const list = $(listId);
  const item = document.createElement("li");
  if (className) item.className = className;
  for (const [tag, text, cls] of parts) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (cls) el.className = cls;
    item.append(el, " ");
  }
  list.append(item);
  while (list.children.length > 500) list.firstChild.remove();
  list.scrollTop = list.scrollHeight;
  return item;
}

function log(text) {
  addLine("log", [["time", clock(Date.now())], ["span", text]]);
}

function setStatus(name, text) {
  const badge = $("status");
  badge.dataset.state = name;
  badge.textContent = text || name;
  const open = name === "connected";
  for (const id of ["chat-send", "subscribe", "unsubscribe", "publish", "whoami", "raw-send", "disconnect"]) {
    $(id).disabled = !open && !(id === "disconnect" && state.wanted);
  }
  $("connect").disabled = state.wanted;
  $("mode").disabled = state.wanted;
}

function clearTimer(name) {
  if (state.timers[name]) {
    clearTimeout(state.timers[name]);
    clearInterval(state.timers[name]);
    delete state.timers[name];
  }
}

// ------------------------------------------------------------------ Cognito
async function cognito(target, body) {
  const answer = await fetch(state.config.cognitoEndpoint, {
    method: "POST",
    headers: {"Content-Type": "application/x-amz-json-1.1",
              "X-Amz-Target": "AWSCognitoIdentityProviderService." + target},
    body: JSON.stringify(body),
  });
  const payload = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const type = (payload.__type || "Error").split("#").pop();
    throw new Error(`${type}: ${payload.message || payload.Message || answer.status}`);
  }
  return payload;
}

function keepTokens(result, previous) {
  const access = result.AccessToken || result.access_token;
  const exp = claims(access).exp;
  state.tokens = {
    accessToken: access,
    idToken: result.IdToken || result.id_token || (previous && previous.idToken),
    refreshToken: result.RefreshToken || result.refresh_token || (previous && previous.refreshToken),
    expiresAt: exp ? exp * 1000 : Date.now() + 1000 * (result.ExpiresIn || result.expires_in || 3600),
  };
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(state.tokens));
  scheduleRenewal();
  showSession();
}

async function signInWithPassword(username, password) {
  const result = await cognito("InitiateAuth", {
    AuthFlow: "USER_PASSWORD_AUTH", ClientId: state.config.clientId,
    AuthParameters: {USERNAME: username, PASSWORD: password},
  });
  if (!result.AuthenticationResult) throw new Error(`Cognito asks for a challenge: ${result.ChallengeName}`);
  keepTokens(result.AuthenticationResult);
}

// Hosted UI: authorization code + PKCE (S256), then the token endpoint.
async function signInWithHostedUi() {
  const verifier = b64urlEncode(crypto.getRandomValues(new Uint8Array(48)));
  const challenge = b64urlEncode(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const nonce = b64urlEncode(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({verifier, state: nonce}));
  const url = new URL("/oauth2/authorize", state.config.hostedUiDomain);
  url.search = new URLSearchParams({
    response_type: "code", client_id: state.config.clientId, redirect_uri: state.config.redirectUri,
    scope: "openid email profile", state: nonce, code_challenge_method: "S256", code_challenge: challenge,
  }).toString();
  location.assign(url.toString());
}

async function finishHostedUi(params) {
  const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
  sessionStorage.removeItem(PKCE_KEY);
  history.replaceState(null, "", "/");
  if (params.get("error")) throw new Error(`${params.get("error")}: ${params.get("error_description") || ""}`);
  if (!saved || saved.state !== params.get("state")) throw new Error("sign-in state mismatch: start again");
  const answer = await fetch(new URL("/oauth2/token", state.config.hostedUiDomain), {
    method: "POST",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({
      grant_type: "authorization_code", client_id: state.config.clientId, code: params.get("code"),
      redirect_uri: state.config.redirectUri, code_verifier: saved.verifier,
    }),
  });
  const payload = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(`token endpoint: ${payload.error || answer.status}`);
  keepTokens(payload);
}

// Before the access token expires: REFRESH_TOKEN_AUTH, then the refresh action
// on the open socket, so the server keeps the connection past the old expiry.
function scheduleRenewal() {
  clearTimer("renew");
  if (!state.tokens || !state.tokens.refreshToken) return;
  const lifetime = state.tokens.expiresAt - Date.now();
  const margin = Math.min(state.config.refreshMarginSeconds * 1000, Math.max(lifetime / 3, 0));
  state.timers.renew = setTimeout(() => renewToken("scheduled"), Math.max(lifetime - margin, 0));
}

async function renewToken(why) {
  if (!state.tokens || !state.tokens.refreshToken || state.renewing) return;
  state.renewing = true;
  try {
    const result = await cognito("InitiateAuth", {
      AuthFlow: "REFRESH_TOKEN_AUTH", ClientId: state.config.clientId,
      AuthParameters: {REFRESH_TOKEN: state.tokens.refreshToken},
    });
    keepTokens(result.AuthenticationResult, state.tokens);
    state.counters.renewals += 1;
    $("renewals").textContent = state.counters.renewals;
    log(`token renewed (${why}); expires ${clock(state.tokens.expiresAt)}`);
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      send({action: "refresh", token: state.tokens.accessToken, id: "refresh-" + state.nextId++});
    }
  } catch (error) {
    log(`token renewal failed: ${error.message}`);
    addLine("errors", [["time", clock(Date.now())], ["span", `token renewal failed: ${error.message}`]]);
  } finally {
    state.renewing = false;
  }
}

// ---------------------------------------------------------------- WebSocket
async function openSocket() {
  const mode = $("mode").value;
  const url = new URL(state.config.wsUrl);
  let protocols;
  if (mode === "cookie") {
    // A dev-only endpoint sets the http-only token cookie and the readable CSRF cookie.
    const answer = await fetch(state.config.sessionEndpoint, {
      method: "POST", headers: {Authorization: "Bearer " + state.tokens.accessToken},
    });
    if (!answer.ok) throw new Error(`cookie session: ${answer.status}`);
    url.searchParams.set(state.config.csrfParam, readCookie(state.config.csrfCookie) || "");
  } else {
    protocols = ["cognito-jwt", state.tokens.accessToken];
  }
  return new WebSocket(url.toString(), protocols);
}

async function connect(planned) {
  clearTimer("reconnect");
  if (!state.tokens) return;
  const previous = state.ws;
  if (!planned) setStatus(state.attempt ? "reconnecting" : "connecting");
  // After a long time away the token may have expired: renew it before the upgrade.
  if (state.tokens.expiresAt - Date.now() < 5000) await renewToken("before connecting");
  let ws;
  try {
    ws = await openSocket();
  } catch (error) {
    log(`could not connect: ${error.message}`);
    scheduleReconnect();
    return;
  }
  ws.onopen = () => {
    if (planned && previous && previous !== ws) {
      // Make before break: the new socket is open, the old one goes.
      log("planned reconnect: new connection open, closing the old one");
      previous.retired = true;
      previous.close(1000, "planned reconnect");
    }
    state.ws = ws;
    clearTimer("reconnect");
    setStatus("connected");
    log(`connected: token by ${$("mode").value}${ws.protocol ? `, server selected subprotocol ${ws.protocol}` : ""}`);
    const resumeFrom = state.connectionId;  // the connection this one replaces (its whoami comes next)
    send({action: "whoami", id: "hello"});
    if (resumeFrom && state.topics.size) {
      // Move the old connection's subscriptions here and replay what was missed (docs/history.md).
      send({action: "resume", connectionId: resumeFrom, since: {...state.seqs}, id: "resume"});
    } else {
      resubscribe();
    }
    startKeepalive();
    clearTimer("planned");
    state.timers.planned = setTimeout(() => connect(true), state.config.plannedReconnectSeconds * 1000);
  };
  ws.onmessage = (event) => receive(event.data);
  ws.onclose = (event) => {
    if (ws.retired) return;  // the old socket of a planned reconnect
    if (state.ws !== ws) {    // a planned reconnect's socket that never opened, or a socket let go
      if (planned) log(`planned reconnect failed (${event.code}); keeping the current connection`);
      return;
    }
    state.ws = null;
    clearTimer("keepalive");
    clearTimer("planned");
    log(`connection closed (${event.code}${event.reason ? " " + event.reason : ""})`);
    if (state.wanted) scheduleReconnect(); else setStatus("closed", "disconnected");
  };
  if (!planned) state.ws = ws;
}

function startConnecting() {
  state.wanted = true;
  state.attempt = 0;
  connect(false);
}

// Capped exponential backoff with full jitter: random(0, min(cap, base * 2^attempt)).
function scheduleReconnect() {
  if (!state.wanted) return;
  const ceiling = Math.min(state.config.backoffCapMs, state.config.backoffBaseMs * 2 ** state.attempt);
  const delay = Math.round(Math.random() * ceiling);
  state.attempt += 1;
  setStatus("reconnecting", `reconnecting (attempt ${state.attempt})`);
  log(`reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${state.attempt})`);
  clearTimer("reconnect");
  state.timers.reconnect = setTimeout(() => connect(false), delay);
}

// Below API Gateway's 10-minute idle timeout: a whoami nobody sees.
function startKeepalive() {
  clearTimer("keepalive");
  state.timers.keepalive = setInterval(() => {
    if (send({action: "whoami", id: "keepalive"})) {
      state.counters.keepalives += 1;
      $("keepalives").textContent = state.counters.keepalives;
    }
  }, state.config.keepaliveSeconds * 1000);
}

function send(frame) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  return true;
}

function disconnect() {
  state.wanted = false;
  clearTimer("reconnect");
  clearTimer("planned");
  clearTimer("keepalive");
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close(1000, "bye");
  setStatus("closed", "disconnected");
}

// ------------------------------------------------------------------- frames
function receive(text) {
  let frame;
  try { frame = JSON.parse(text); } catch (e) { addLine("errors", [["span", `not JSON: ${text}`]]); return; }
  if (frame && frame.messageId) {
    if (state.seen.has(frame.messageId)) {
      state.counters.dupes += 1;
      $("dupes").textContent = state.counters.dupes;
      return;
    }
    state.seen.add(frame.messageId);
    state.seenOrder.push(frame.messageId);
    if (state.seenOrder.length > SEEN_MAX) state.seen.delete(state.seenOrder.shift());
  }
  const at = clock(frame.timestamp || Date.now());
  switch (frame.type) {
    case "message":
      addLine("chat-log", [["time", at], ["span", frame.from ? frame.from.username : "?", "who"],
                           ["span", show(frame.data), "text"]], "theirs");
      break;
    case "ack":
      if (frame.action !== "sendmessage") log(`${frame.action}: delivered ${frame.delivered}`);
      break;
    case "subscribed":
      state.topics.add(frame.topic);
      if (frame.seq !== undefined) state.seqs[frame.topic] = Math.max(state.seqs[frame.topic] || 0, frame.seq);
      noteGap(frame.topic, frame);
      showTopics();
      break;
    case "replay":  // kept messages a reconnect missed, in order, each as it was delivered
      for (const message of frame.messages || []) receive(JSON.stringify(message));
      break;
    case "resumed":
      for (const [topic, result] of Object.entries(frame.topics || {})) {
        if (result.reason === "forbidden") state.topics.delete(topic);
        if (result.seq !== undefined) state.seqs[topic] = Math.max(state.seqs[topic] || 0, result.seq);
        noteGap(topic, result);
      }
      log(`resumed ${Object.keys(frame.topics || {}).length} topic(s) from the previous connection`);
      showTopics();
      break;
    case "unsubscribed":
      state.topics.delete(frame.topic);
      showTopics();
      if (frame.reason) $("topic-refused").textContent = `Unsubscribed from ${frame.topic}: ${frame.reason}`;
      break;
    case "publish":
    case "push":
      if (frame.seq !== undefined) state.seqs[frame.topic] = Math.max(state.seqs[frame.topic] || 0, frame.seq);
      addLine("topic-log", [["time", at], ["span", frame.topic, "topic"],
                            ["span", frame.from ? frame.from.username : "back-end", "who"],
                            ["span", show(frame.data), "text"]]);
      break;
    case "notification":
    case "broadcast":
      addLine("notifications", [["time", at], ["span", frame.type, "who"], ["span", show(frame.data), "text"]]);
      break;
    case "whoami":
      if (frame.id === "keepalive") break;
      $("identity").textContent = JSON.stringify(frame.identity, null, 2);
      if (frame.id === "hello") state.connectionId = frame.identity.connectionId;
      $("inbox").dataset.topic = `user/${frame.identity.userId}/inbox`;  // the default rules' private topic
      $("inbox").disabled = false;
      if (frame.id === "hello") state.attempt = 0;  // a good connection: the backoff starts over
      break;
    case "refreshed":
      log("server accepted the renewed token");
      break;
    case "token_expiring":
      log(`server: token expiring at ${clock(frame.expiresAt * (frame.expiresAt < 1e12 ? 1000 : 1))}`);
      renewToken("token_expiring");
      break;
    case "error":
      addLine("errors", [["time", at], ["span", frame.code, "who"], ["span", frame.message || ""]]);
      if (frame.id === "resume") resubscribe();  // the old connection could not be resumed: subscribe again
      if (String(frame.id || "").startsWith("subscribe:")) {  // a refused subscription, said where it was asked
        $("topic-refused").textContent = `Not subscribed to ${frame.id.slice(10)}: ${frame.message || frame.code}`;
      }
      break;
    case "echo":
      log(`echo: ${show(frame.message)}`);
      break;
    default:
      if (frame.type === undefined && frame.message) {  // API Gateway's own error frame
        addLine("errors", [["time", at], ["span", "gateway", "who"], ["span", frame.message]]);
      } else {
        log(`frame: ${text}`);
      }
  }
}

// Without a resume (or when it is refused): subscribe again, catching up where a topic keeps history.
function resubscribe() {
  for (const topic of state.topics) {
    const since = state.seqs[topic];
    send(since === undefined ? {action: "subscribe", topic, id: "subscribe:" + topic}
                             : {action: "subscribe", topic, since, id: "subscribe:" + topic});
  }
}

function noteGap(topic, result) {
  if (result.resumed === false && result.reason !== "forbidden") {
    $("topic-refused").textContent = `Could not resume ${topic}: messages were missed; reload it from the app`;
  }
}

function showTopics() {
  $("topics").textContent = state.topics.size ? [...state.topics].sort().join(", ") : "none";
}

// ------------------------------------------------------------------- the UI
function showSession() {
  const signedIn = Boolean(state.tokens);
  $("signin-panel").hidden = signedIn;
  $("session-panel").hidden = !signedIn;
  $("work").hidden = !signedIn;
  if (signedIn) {
    const c = claims(state.tokens.accessToken);
    $("me").textContent = c.username || c["cognito:username"] || c.sub || "?";
    $("token-exp").textContent = clock(state.tokens.expiresAt);
    if ($("status").dataset.state === "signed-out") setStatus("closed", "not connected");
  } else {
    setStatus("signed-out", "signed out");
  }
}

function bind() {
  $("password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("signin-error").textContent = "";
    try {
      await signInWithPassword($("username").value.trim(), $("password").value);
      $("password").value = "";
      startConnecting();  // signed in: connect now, no second click
    } catch (error) {
      $("signin-error").textContent = error.message;
    }
  });
  $("signin-hosted").addEventListener("click", () => signInWithHostedUi());
  $("connect").addEventListener("click", startConnecting);
  $("disconnect").addEventListener("click", disconnect);
  $("whoami").addEventListener("click", () => send({action: "whoami", id: "whoami-" + state.nextId++}));
  $("signout").addEventListener("click", async () => {
    disconnect();
    clearTimer("renew");
    state.tokens = null;
    sessionStorage.removeItem(TOKENS_KEY);
    if (state.config.sessionEndpoint) await fetch(state.config.sessionEndpoint, {method: "DELETE"}).catch(() => {});
    showSession();
  });
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("chat-input").value;
    if (!text || !send({action: "sendmessage", data: text, id: "chat-" + state.nextId++})) return;
    const me = $("me").textContent;
    addLine("chat-log", [["time", clock(Date.now())], ["span", me, "who"], ["span", text, "text"]], "mine");
    $("chat-input").value = "";
  });
  const topic = () => $("topic").value.trim();
  $("subscribe").addEventListener("click", () => {
    $("topic-refused").textContent = "";
    send({action: "subscribe", topic: topic(), id: "subscribe:" + topic()});
  });
  $("inbox").addEventListener("click", () => { $("topic").value = $("inbox").dataset.topic; });
  $("unsubscribe").addEventListener("click", () => send({action: "unsubscribe", topic: topic()}));
  $("publish-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (send({action: "publish", topic: topic(), data: $("publish-data").value})) $("publish-data").value = "";
  });
  $("raw-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (send($("raw-input").value)) $("raw-input").value = "";
  });
}

async function main() {
  bind();
  try {
    const answer = await fetch("/config.json", {cache: "no-store"});
    state.config = await answer.json();
  } catch (error) {
    $("signin-error").textContent = `could not read /config.json: ${error.message}`;
    return;
  }
  const config = state.config;
  $("stage").textContent = `stage ${config.stage} · ${config.wsUrl}`;
  $("password-form").hidden = config.signIn !== "password";
  if (config.demoUser) {  // make run's own page: the local demo credentials, as placeholders
    $("username").placeholder = config.demoUser;
    $("password").placeholder = config.demoPassword || "";
  }
  $("hosted-ui").hidden = config.signIn !== "hosted-ui";
  if (!config.cookieMode) $("mode").querySelector('option[value="cookie"]').disabled = true;
  const params = new URLSearchParams(location.search);
  if (location.pathname === "/callback" && (params.get("code") || params.get("error"))) {
    try {
      await finishHostedUi(params);
      if (state.tokens) startConnecting();  // back from the hosted UI, signed in: connect
    } catch (error) { $("signin-error").textContent = error.message; }
  }
  if (!state.tokens) {
    const saved = JSON.parse(sessionStorage.getItem(TOKENS_KEY) || "null");
    if (saved && saved.accessToken) {
      state.tokens = saved;
      if (saved.expiresAt <= Date.now()) await renewToken("page load"); else scheduleRenewal();
    }
  }
  showSession();
  document.body.dataset.ready = "true";
}

main();
