// The one-time password page. The link's token is in the URL fragment (never sent to a server). We read it, wipe it
// from the address bar, and trade it at once for a page session (an HttpOnly cookie): from then on the token is dead,
// so the copy of the link that the browser's history keeps opens nothing. No third-party code, no inline script.
"use strict";

(function () {
  const GONE = "This link was already used or has expired. Go back to the form in Slack and use its password " +
    "button again: the form offers a fresh link.";
  const SIGNIN_RESULTS = {
    wrong_user: "You signed in with Slack as someone other than the person this link was made for, so the page " +
      "was closed and the link no longer works. Only that person can set this password: they get a fresh link from " +
      "their Slack form.",
    wrong_team: "You signed in to another Slack workspace than the bot's, so the page was closed. Go back to the " +
      "form in Slack for a fresh link, and sign in to the bot's workspace.",
    denied: "Sign-in was cancelled at Slack. Use Sign in with Slack again, or go back to the Slack form for a " +
      "fresh link.",
    failed: "Sign in with Slack did not complete, so the bot cannot tell who you are. Go back to the form in Slack " +
      "and use its password button again.",
    expired: "This sign-in took too long or was already used. Go back to the form in Slack and use its password " +
      "button again for a fresh link.",
    nosession: "This browser has no open password page. Use the password button in the Slack form.",
  };
  const $ = (id) => document.getElementById(id);
  let info = null; // rules and state from the server
  let busy = false;
  let deadline = 0; // when this page's session ends (ms since epoch)
  let ticker = null;

  function readFragment() {
    const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    const u = params.get("u");
    const t = params.get("t");
    // Wipe the token from the address bar. (Chromium's history keeps the URL the tab first loaded anyway, which is
    // why the token is traded for a session straight away and never works again.)
    if (window.location.hash) {
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return u && t ? { u, t } : null;
  }

  async function call(path, body) {
    const response = await fetch("password/api/" + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Requested-With": "ecsbot" },
      body: JSON.stringify(body || {}),
      cache: "no-store",
      credentials: "same-origin",
      referrerPolicy: "no-referrer",
    });
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = {};
    }
    return { status: response.status, data };
  }

  function announce(message) {
    // A live region that is always in the page, so screen readers announce each new error.
    $("live").textContent = "";
    window.setTimeout(() => { $("live").textContent = message; }, 50);
  }

  function show(id) {
    for (const other of ["loading", "gone", "signin", "form", "done", "generated", "failed"]) {
      $(other).hidden = other !== id;
    }
  }

  function showGone(message) {
    $("gone-text").textContent = message || GONE;
    clearInputs();
    stopTicker();
    show("gone");
    announce(message || GONE);
  }

  function showFailure(message) {
    const text = message || "Something went wrong. Go back to the form in Slack and use its password button again.";
    $("failed-text").textContent = text;
    $("failed").hidden = false;
    announce(text);
  }

  function clearInputs() {
    $("password").value = "";
    $("confirm").value = "";
  }

  function clock(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const m = Math.floor(s / 60);
    return m + ":" + String(s % 60).padStart(2, "0");
  }

  // --- the countdown: the page's session, not the link, is what expires now -------------------------------------
  function startTicker(seconds) {
    deadline = Date.now() + seconds * 1000;
    stopTicker();
    tick();
    ticker = window.setInterval(tick, 1000);
  }

  function stopTicker() {
    if (ticker !== null) window.clearInterval(ticker);
    ticker = null;
  }

  function tick() {
    const left = (deadline - Date.now()) / 1000;
    if (left <= 0) {
      showGone("This page's time is up. Go back to the form in Slack and use its password button again for a " +
        "fresh link.");
      return;
    }
    const text = "This page works for " + duration(left) + " more (minutes:seconds). After that, use the " +
      "button in the Slack form again.";
    $("expiry").textContent = text;
    $("signin-expiry").textContent = text;
  }

  // --- the rules, mirrored from bot/domain/passwords.py (the server checks again) -------------------------------
  function evaluate(pw) {
    const chars = Array.from(pw);
    const specials = new Set(Array.from(info.specials));
    const isUpper = (c) => c >= "A" && c <= "Z";
    const isLower = (c) => c >= "a" && c <= "z";
    const isDigit = (c) => c >= "0" && c <= "9";
    const classes = [
      chars.some(isUpper),
      chars.some(isLower),
      chars.some(isDigit),
      chars.some((c) => specials.has(c)),
    ].filter(Boolean).length;
    const result = {
      length: chars.length >= info.min_length && chars.length <= info.max_length,
      classes: classes >= 3,
      allowed: chars.every((c) => isUpper(c) || isLower(c) || isDigit(c) || specials.has(c)),
    };
    if (info.username) {
      const folded = pw.toLowerCase();
      const name = info.username.toLowerCase();
      const reversed = Array.from(name).reverse().join("");
      let ok = !folded.includes(name) && !folded.includes(reversed);
      for (let i = 0; ok && i + 3 <= name.length; i++) {
        if (folded.includes(name.slice(i, i + 3))) ok = false;
      }
      result.username = ok;
    }
    return result;
  }

  function renderRules() {
    const list = $("rules");
    list.textContent = "";
    for (const rule of info.rules) {
      const item = document.createElement("li");
      item.dataset.rule = rule.id;
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = "•";
      const text = document.createElement("span");
      text.textContent = rule.text;
      const status = document.createElement("span");
      status.className = "sr-only status";
      status.textContent = "";
      item.append(mark, text, status);
      list.append(item);
    }
  }

  function unmetRules() {
    const verdict = evaluate($("password").value);
    return info.rules.filter((rule) => verdict[rule.id] === false).map((rule) => rule.text);
  }

  function update() {
    const pw = $("password").value;
    const confirm = $("confirm").value;
    const verdict = evaluate(pw);
    let allOk = true;
    for (const item of $("rules").children) {
      const ok = verdict[item.dataset.rule] !== false;
      allOk = allOk && ok;
      item.classList.toggle("ok", pw !== "" && ok);
      item.classList.toggle("bad", pw !== "" && !ok);
      item.querySelector(".mark").textContent = pw === "" ? "•" : ok ? "✓" : "✗";
      item.querySelector(".status").textContent = pw === "" ? "" : ok ? " (met)" : " (not met)";
    }
    $("password").setAttribute("aria-invalid", String(pw !== "" && !allOk));
    const match = $("match");
    let state = "empty";
    if (confirm !== "") state = confirm === pw ? "match" : "mismatch";
    match.dataset.state = state;
    match.classList.toggle("ok", state === "match");
    match.classList.toggle("bad", state !== "match");
    match.querySelector(".mark").textContent = state === "match" ? "✓" : "✗";
    $("match-text").textContent = {
      empty: "Type the password twice",
      match: "Both entries match",
      mismatch: "The two entries do not match",
    }[state];
    $("confirm").setAttribute("aria-invalid", String(state === "mismatch"));
    $("submit").disabled = busy || !(pw !== "" && allOk && state === "match");
  }

  function showProblems(title, problems) {
    $("problems-title").textContent = title;
    const list = $("problems-list");
    list.textContent = "";
    for (const problem of problems || []) {
      const item = document.createElement("li");
      item.textContent = problem;
      list.append(item);
    }
    $("problems").hidden = false;
    announce([title, ...(problems || [])].join(" "));
  }

  function explainWhyNotYet() {
    // Enter (or a click) while the password cannot be sent yet: say why instead of doing nothing.
    const unmet = unmetRules();
    if ($("password").value === "") {
      $("password").setAttribute("aria-invalid", "true");
      showProblems("Type a password first.", []);
      $("password").focus();
    } else if (unmet.length) {
      $("password").setAttribute("aria-invalid", "true");
      showProblems("The password does not meet these rules yet:", unmet);
      $("password").focus();
    } else {
      $("confirm").setAttribute("aria-invalid", "true");
      showProblems("Type the same password again in the second field.", []);
      $("confirm").focus();
    }
  }

  function setBusy(value) {
    busy = value;
    $("generate").disabled = value;
    update();
  }

  function onKey(event) {
    if (event.key === "Enter" && $("submit").disabled && !busy) {
      event.preventDefault();
      explainWhyNotYet();
    }
  }

  function setLine(result) {
    const kept = Math.max(1, Math.round(result.expires_in / 60));
    return "Kept encrypted until " + clock(result.set_at + result.expires_in) + " (about " + kept + " minute" +
      (kept === 1 ? "" : "s") + "). Submit the Slack form before then; after that the password is deleted and " +
      "the form offers a fresh link.";
  }

  function handleRefusal(status, data) {
    if (status === 410) showGone(data.error);
    else if (status === 401 && data.signin) showSignin();
    else showFailure(data.error);
  }

  async function submit(event) {
    event.preventDefault();
    if ($("submit").disabled) {
      if (!busy) explainWhyNotYet();
      return;
    }
    $("problems").hidden = true;
    $("failed").hidden = true;
    setBusy(true);
    try {
      const { status, data } = await call("set", { password: $("password").value, confirm: $("confirm").value });
      if (status === 200) {
        clearInputs();
        stopTicker();
        $("done-expiry").textContent = setLine(data);
        show("done");
      } else if (status === 422) {
        $("password").setAttribute("aria-invalid", "true");
        showProblems(data.error || "This password cannot be used.", data.problems);
      } else {
        handleRefusal(status, data);
      }
    } catch (_) {
      showFailure("The bot could not be reached. Check your connection and try again.");
    } finally {
      setBusy(false);
    }
  }

  async function generate() {
    $("problems").hidden = true;
    $("failed").hidden = true;
    setBusy(true);
    try {
      const { status, data } = await call("generate");
      if (status === 200 && data.password) {
        clearInputs();
        stopTicker();
        $("generated-value").value = data.password;
        $("generated-expiry").textContent = setLine(data);
        show("generated");
        $("generated-value").focus();
        $("generated-value").select();
      } else {
        handleRefusal(status, data);
      }
    } catch (_) {
      showFailure("The bot could not be reached. Check your connection and try again.");
    } finally {
      setBusy(false);
    }
  }

  async function copy() {
    const field = $("generated-value");
    try {
      await navigator.clipboard.writeText(field.value);
      $("copied").textContent = "Copied to the clipboard.";
    } catch (_) {
      field.focus();
      field.select();
      $("copied").textContent = "Select the text and copy it (Ctrl+C or ⌘C).";
    }
  }

  function showSignin() {
    show("signin");
    $("signin-button").focus();
  }

  function showForm() {
    $("os-type").textContent = info.os_type;
    $("who").textContent = info.signed_in ? "Signed in with Slack: the password is recorded as set by you." : "";
    $("bearer").hidden = !info.bearer;
    const current = info.current;
    $("current").hidden = !current;
    if (current) {
      const by = current.set_by_you ? "by you" : "through this form's link";
      const until = Math.floor(Date.now() / 1000) + current.expires_in;
      $("current").textContent = "A password is already set for this form (" + by + " at " + clock(current.set_at) +
        ", kept until " + clock(until) + "). Setting a new one here replaces it.";
    }
    renderRules();
    update();
    show("form");
    $("password").focus();
  }

  async function start() {
    show("loading");
    const link = readFragment();
    const query = new URLSearchParams(window.location.search);
    const signin = query.get("signin");
    if (window.location.search) history.replaceState(null, "", window.location.pathname);
    if (signin && signin !== "ok" && signin !== "off") {
      showGone(SIGNIN_RESULTS[signin] || SIGNIN_RESULTS.failed);
      return;
    }
    try {
      if (link) {
        const opened = await call("open", link);
        if (opened.status !== 200) {
          handleRefusal(opened.status, opened.data);
          return;
        }
      }
      const { status, data } = await call("info");
      if (status === 401 && data.signin) {
        startTicker(data.expires_in || 0);
        showSignin();
        return;
      }
      if (status !== 200) {
        if (status === 410) showGone(data.error);
        else {
          show("failed");
          showFailure(data.error);
        }
        return;
      }
      info = data;
    } catch (_) {
      show("failed");
      showFailure("The bot could not be reached. Check your connection and reload the page.");
      return;
    }
    startTicker(info.expires_in);
    $("password").addEventListener("input", update);
    $("confirm").addEventListener("input", update);
    $("password").addEventListener("keydown", onKey);
    $("confirm").addEventListener("keydown", onKey);
    $("form").addEventListener("submit", submit);
    $("generate").addEventListener("click", generate);
    $("copy").addEventListener("click", copy);
    showForm();
  }

  document.addEventListener("DOMContentLoaded", start);
  // Another link pasted into this tab changes only the fragment, which loads nothing: start afresh.
  window.addEventListener("hashchange", () => window.location.reload());
})();
