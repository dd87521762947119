// Slack mrkdwn as Slack's client shows it, as HTML: *bold*, _italic_, ~strike~, `code`, ```blocks```, <links|labels>,
// <@U…> and <#C…|name> mentions, <!here>, <!date^…> dates, :emoji: and the &amp; &lt; &gt; escapes.
// Pure functions: every piece of text from the bot is escaped before it becomes HTML.

const EMOJI = {
  hourglass_flowing_sand: "⏳", white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️",
  no_entry: "⛔", no_entry_sign: "🚫", rocket: "🚀", lock: "🔒", key: "🔑", arrows_counterclockwise: "🔄",
  thumbsup: "👍", "+1": "👍", wastebasket: "🗑️", mag: "🔎", outbox_tray: "📤", stop_button: "⏹️",
  hourglass: "⌛", incoming_envelope: "📨", arrow_forward: "▶️", information_source: "ℹ️",
};

export function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/** Slack sends &, < and > escaped in text; these are the characters a person sees. */
export function decodeEntities(text) {
  return String(text).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

export function emoji(text) {
  return text.replace(/:([a-z0-9_+-]+):/g, (whole, code) => EMOJI[code] ?? whole);
}

const DATE_TOKENS = {
  date_num: (d) => d.toISOString().slice(0, 10),
  date: (d) => d.toLocaleDateString("en-US", { month: "long", day: "numeric", year: "numeric" }),
  date_short: (d) => d.toLocaleDateString("en-US", { month: "short", day: "numeric", year: "numeric" }),
  date_long: (d) => d.toLocaleDateString("en-US", { weekday: "long", month: "long", day: "numeric", year: "numeric" }),
  date_pretty: (d) => prettyDay(d) ?? DATE_TOKENS.date(d),
  date_short_pretty: (d) => prettyDay(d) ?? DATE_TOKENS.date_short(d),
  date_long_pretty: (d) => prettyDay(d) ?? DATE_TOKENS.date_long(d),
  time: (d) => d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }),
  time_secs: (d) => d.toLocaleTimeString("en-GB"),
};

function prettyDay(d) {
  const day = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const diff = Math.round((day(new Date()) - day(d)) / 86400000);
  return { 0: "today", 1: "yesterday", "-1": "tomorrow" }[diff];
}

/** `<!date^EPOCH^FORMAT|fallback>` in the viewer's time zone, as Slack draws it; unknown tokens give the fallback. */
export function formatDate(epoch, format, fallback) {
  const when = new Date(Number(epoch) * 1000);
  if (Number.isNaN(when.getTime())) return fallback;
  let unknown = false;
  const text = format.replace(/\{(\w+)\}/g, (_, token) => {
    const fn = DATE_TOKENS[token];
    if (!fn) unknown = true;
    return fn ? fn(when) : "";
  });
  return unknown ? fallback : text;
}

function safeUrl(url) {
  return /^(https?:|mailto:)/i.test(url) ? url : null;
}

/** One `<…>` entity as HTML. `ctx.names` maps user IDs to names, `ctx.channels` channel IDs to names. */
export function renderEntity(inner, ctx = {}) {
  const bar = inner.indexOf("|");
  const target = bar < 0 ? inner : inner.slice(0, bar);
  const label = bar < 0 ? "" : decodeEntities(inner.slice(bar + 1));
  const names = ctx.names ?? {};
  const channels = ctx.channels ?? {};
  if (target.startsWith("@")) {
    const id = target.slice(1);
    return `<span class="mention" data-user="${escapeHtml(id)}">@${escapeHtml(names[id] ?? (label || id))}</span>`;
  }
  if (target.startsWith("#")) {
    const id = target.slice(1);
    const name = label || channels[id] || id;
    return `<span class="channel-link" data-channel="${escapeHtml(id)}">#${escapeHtml(name)}</span>`;
  }
  if (target.startsWith("!subteam^")) {
    return `<span class="mention">@${escapeHtml(label.replace(/^@/, "") || target.split("^")[1])}</span>`;
  }
  if (target.startsWith("!date^")) {
    const [, epoch, format = "{date_short_pretty}"] = target.split("^");
    const shown = formatDate(epoch, decodeEntities(format), label || epoch);
    return `<time datetime="${escapeHtml(new Date(Number(epoch) * 1000).toISOString?.() ?? "")}" title="${
      escapeHtml(label)}">${escapeHtml(shown)}</time>`;
  }
  if (target.startsWith("!")) {
    return `<span class="mention">@${escapeHtml(label || target.slice(1))}</span>`;
  }
  const url = safeUrl(decodeEntities(target));
  const text = escapeHtml(label || decodeEntities(target));
  return url ? `<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${text}</a>` : text;
}

// Formatting marks need a boundary outside and no space inside, as in Slack: snake_case_names stay plain.
const OPEN = "(^|[\\s(\\[{>\"'\\u0002])";
const CLOSE = "(?=$|[\\s.,!?;:)\\]}<\"'\\u0001])";
const MARKS = [
  [new RegExp(`${OPEN}\\*(?!\\s)([^*\\n]+?)(?<!\\s)\\*${CLOSE}`, "g"), "strong"],
  [new RegExp(`${OPEN}_(?!\\s)([^_\\n]+?)(?<!\\s)_${CLOSE}`, "g"), "em"],
  [new RegExp(`${OPEN}~(?!\\s)([^~\\n]+?)(?<!\\s)~${CLOSE}`, "g"), "del"],
];

function formatPlain(escaped) {
  let html = escaped;
  for (const [pattern, tag] of MARKS) {
    html = html.replace(pattern, (_, before, inner) => `${before}<${tag}>${inner}</${tag}>`);
  }
  return html;
}

const HOLE = /\u0001(\d+)\u0002/g;

/** Slack mrkdwn to HTML (see the top of this file). */
export function mrkdwn(text, ctx = {}) {
  const holes = [];
  // Entities first: Slack reads <…> as a link or a mention everywhere, inside backticks too.
  const withHoles = String(text ?? "").replace(/<([^<>\n]+)>/g, (_, inner) => {
    holes.push(renderEntity(inner, ctx));
    return `\u0001${holes.length - 1}\u0002`;
  });
  const fill = (html) => html.replace(HOLE, (_, n) => holes[Number(n)]);
  const parts = withHoles.split(/(```[\s\S]*?```|`[^`\n]+`)/);
  const html = parts.map((part, i) => {
    if (i % 2 === 1) {
      if (part.startsWith("```")) {
        const body = part.slice(3, -3).replace(/^\n/, "");
        return `<pre class="code-block">${fill(escapeHtml(decodeEntities(body)))}</pre>`;
      }
      return `<code>${fill(escapeHtml(decodeEntities(part.slice(1, -1))))}</code>`;
    }
    return fill(emoji(formatPlain(escapeHtml(decodeEntities(part)))));
  });
  return html.join("").replace(/\n/g, "<br>");
}

/** A text object (plain_text or mrkdwn) as HTML. */
export function textObject(obj, ctx = {}) {
  if (!obj) return "";
  if (obj.type === "mrkdwn") return mrkdwn(obj.text, ctx);
  const plain = escapeHtml(obj.text ?? "");
  return (obj.emoji === false ? plain : emoji(plain)).replace(/\n/g, "<br>");
}
