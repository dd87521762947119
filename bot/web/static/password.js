// The one-time password page. The link's token is in the URL fragment (never sent to a server); we read it, wipe it
// from the address bar, and send it only in JSON bodies to the bot's own API. No third-party code, no inline script.
"use strict";

(function () {
  const GONE = "This link was already used or has expired. Open the form in Slack again and choose Admin password " +
    "to get a new link.";
  const $ = (id) => document.getElementById(id);
  let link = null; // {u, t}
  let info = null; // rules from the server
  let busy = false;

  function readFragment() {
    const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    const u = params.get("u");
    const t = params.get("t");
    // Remove the token from the address bar and from history, so it is not left behind on this device.
    if (window.location.hash) {
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return u && t ? { u, t } : null;
  }

  async function call(path, extra) {
    const response = await fetch("password/api/" + path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Requested-With": "ecsbot" },
      body: JSON.stringify(Object.assign({ u: link.u, t: link.t }, extra || {})),
      cache: "no-store",
      credentials: "omit",
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

  function show(id) {
    for (const other of ["loading", "gone", "form", "done", "generated", "failed"]) {
      $(other).hidden = other !== id;
    }
  }

  function showGone(message) {
    $("gone-text").textContent = message || GONE;
    clearInputs();
    show("gone");
  }

  function showFailure(message) {
    $("failed-text").textContent = message || "Something went wrong. Open the form in Slack again to get a new link.";
    $("failed").hidden = false;
  }

  function clearInputs() {
    $("password").value = "";
    $("confirm").value = "";
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
  }

  function setBusy(value) {
    busy = value;
    $("generate").disabled = value;
    update();
  }

  async function submit(event) {
    event.preventDefault();
    if ($("submit").disabled) return;
    $("problems").hidden = true;
    $("failed").hidden = true;
    setBusy(true);
    try {
      const { status, data } = await call("set", { password: $("password").value, confirm: $("confirm").value });
      if (status === 200) {
        clearInputs();
        show("done");
      } else if (status === 422) {
        showProblems(data.error || "This password cannot be used.", data.problems);
      } else if (status === 410) {
        showGone(data.error);
      } else {
        showFailure(data.error);
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
        $("generated-value").value = data.password;
        show("generated");
        $("generated-value").focus();
        $("generated-value").select();
      } else if (status === 410) {
        showGone(data.error);
      } else {
        showFailure(data.error);
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

  async function start() {
    link = readFragment();
    if (!link) {
      showGone("This link is incomplete. Use the Set password securely button in the Slack form to open it.");
      return;
    }
    try {
      const { status, data } = await call("info");
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
    $("os-type").textContent = info.os_type;
    const minutes = Math.max(1, Math.round(info.expires_in / 60));
    $("expiry").textContent = "This link works once and expires in about " + minutes + " minute" +
      (minutes === 1 ? "" : "s") + ".";
    renderRules();
    $("password").addEventListener("input", update);
    $("confirm").addEventListener("input", update);
    $("form").addEventListener("submit", submit);
    $("generate").addEventListener("click", generate);
    $("copy").addEventListener("click", copy);
    update();
    show("form");
    $("password").focus();
  }

  document.addEventListener("DOMContentLoaded", start);
  // Another link pasted into this tab changes only the fragment, which loads nothing: start afresh.
  window.addEventListener("hashchange", () => window.location.reload());
})();
