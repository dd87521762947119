"""The `/changeos` text parser: pure, total, and never raises.

Whatever a person types, the result is a command or a `UsageError` that says what to fix. Missing pieces (server,
image, reason) are not errors: the modal asks for them. Text arrives the way Slack sends it: `&`, `<` and `>`
HTML-escaped, channels as `<#C…|name>` when escaping is on, and quotes often "smartened" by the client.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from bot.domain.request import ID_ALPHABET, ID_PATTERN, StopType
from bot.domain.since import Since, parse_since

USAGE = (
    "/changeos SERVER [IMAGE] [--key NAME | --password] [--stop soft|hard] [--reason TEXT] [--ticket ID] "
    "[--notify #channel …]  ·  /changeos status [CR-… | SERVER]  ·  /changeos list  ·  /changeos cancel CR-…  ·  "
    "/changeos rollback CR-…  ·  /changeos backups SERVER  ·  /changeos history [SERVER] [--mine] [--since 7d]  ·  "
    "/changeos help"
)

# What Slack and the cloud accept; a longer value is refused with a message, never cut (we never change what was
# typed). Slack sends at most 4,000 characters of command text; ECS names and key pair names have at most 64, IMS
# image names 128; the plan modal's reason and ticket inputs allow 500 and 100.
MAX_TEXT = 4000
MAX_LENGTHS = {"server": 64, "image": 128, "key": 64, "reason": 500, "ticket": 100}
MAX_NOTIFY = 20
MAX_MESSAGE = 480  # every usage message stays short, whatever was typed


@dataclass(frozen=True, slots=True)
class HelpCommand:
    pass


@dataclass(frozen=True, slots=True)
class StatusCommand:
    target: str | None = None


@dataclass(frozen=True, slots=True)
class ListCommand:
    pass


@dataclass(frozen=True, slots=True)
class CancelCommand:
    request_id: str


@dataclass(frozen=True, slots=True)
class RollbackCommand:
    """A new request back to the backup taken before `request_id` (the final message's Roll back button)."""

    request_id: str


@dataclass(frozen=True, slots=True)
class BackupsCommand:
    server: str


@dataclass(frozen=True, slots=True)
class HistoryCommand:
    """The latest changes, of one server and/or of the person asking, since an age or a date."""

    server: str | None = None
    mine: bool = False
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class ChangeCommand:
    server: str | None = None
    image: str | None = None
    keyname: str | None = None
    password: bool = False
    stop: StopType | None = None
    reason: str | None = None
    ticket: str | None = None
    notify: list[str] = field(default_factory=list)
    notify_names: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UsageError:
    message: str
    usage: str = USAGE


Command = (
    HelpCommand
    | StatusCommand
    | ListCommand
    | CancelCommand
    | RollbackCommand
    | BackupsCommand
    | HistoryCommand
    | ChangeCommand
    | UsageError
)


# ---------------------------------------------------------------------------------------------------------------------
# Tokens

_WORD, _CHANNEL, _MENTION, _LINK = "word", "channel", "mention", "link"

# Slack's escaped entities; only these are taken whole when they start a token.
_SLACK_ENTITY = re.compile(
    r"<(?:"
    r"#(?P<channel>[CG][A-Z0-9]+)(?:\|(?P<channel_name>[^>\s]*))?"
    r"|(?P<mention>@[UW][A-Z0-9]+(?:\|[^>]*)?|!subteam\^S[A-Z0-9]+(?:\|[^>]*)?|![a-z]+(?:\|[^>]*)?)"
    r"|(?P<link>(?:https?|mailto):[^>\s|]+)(?:\|[^>]*)?"
    r")>"
)
# Opening quote -> the characters that may close it. Clients "smarten" quotes, often unevenly, so any double quote
# closes a double quote and any single quote a single one. Written as escapes: the curly quotes look alike in source.
_LDQ, _RDQ, _LOW, _LSQ, _RSQ = "\u201c", "\u201d", "\u201e", "\u2018", "\u2019"
_QUOTES = {
    '"': '"' + _RDQ + _LDQ,
    _LDQ: _RDQ + '"' + _LDQ,
    _RDQ: _RDQ + '"' + _LDQ,
    _LOW: _LDQ + _RDQ + '"',
    "'": "'" + _RSQ,
    _LSQ: _RSQ + "'",
    _RSQ: _RSQ + "'",
}
_FLAG_STARTS = "-\u2014\u2013"  # what _FLAG's first character may be: most words are not flags, and skip the regex
_FLAG = re.compile("^(?:--?|[\u2014\u2013])" r"(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:=(?P<value>.*))?$", re.DOTALL)


class _Token(NamedTuple):  # not a frozen dataclass: a command has a handful, built before every ack (3x cheaper)
    text: str
    kind: str = _WORD
    quoted: bool = False
    value: str = ""  # channel id or link target


class _Usage(Exception):
    """Internal control flow: always turned into a `UsageError` by `parse_command`."""


def _unescape(text: str) -> str:
    # &amp; last, so "&amp;lt;" stays the literal "&lt;" the person typed.
    if "&" not in text:
        return text
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


_SPACES = re.compile(r"\s+")  # \s is str.isspace's set
_PLAIN = re.compile("[^\\s" + re.escape("".join(_QUOTES)) + "]+")  # a run of characters that are neither


# The usual command in one pass of C: words and whole 'quoted' or "quoted" words, no Slack entity (<...>), no escape
# (&...), no other quote. Anything else takes the general scan below, which gives these texts the same tokens.
# Possessive quantifiers (*+, ++): nothing is tried twice, so a text that does not fit fails in linear time.
_QUICK_TOKEN = (
    "(?:(')([^'\u2019&]*+)['\u2019]|(\")([^\"\u201c\u201d&]*+)[\"\u201c\u201d]|([^\\s<&"
    + "".join(_QUOTES)
    + "]++))(?=\\s|\\Z)"
)
_QUICK_TEXT = re.compile(f"\\s*+(?:{_QUICK_TOKEN}(?:\\s++{_QUICK_TOKEN})*+)?\\s*+")
_QUICK = re.compile(_QUICK_TOKEN)


def _tokenize(text: str) -> list[_Token]:
    """Words split on whitespace; a quote opens a quoted part at a word's start or right after "=" (an apostrophe
    inside a word, like don't, is a letter); Slack's entities are taken whole at a word's start. This runs before
    every ack: the usual text is split by one regex, the rest scanned by runs, not characters."""
    if _QUICK_TEXT.fullmatch(text):
        return [
            _Token(word) if word else _Token(single if apostrophe else double, quoted=True)
            for apostrophe, single, _quote, double, word in _QUICK.findall(text)
        ]
    return _scan(text)


def _scan(text: str) -> list[_Token]:
    """The general tokenizer, for every text (`_tokenize` takes the usual ones by regex)."""
    tokens: list[_Token] = []
    cur: list[str] = []
    started = quoted = after_eq = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            if started:
                tokens.append(_Token(_unescape("".join(cur)), quoted=quoted))
                cur, started, quoted = [], False, False
            i = _SPACES.match(text, i).end()  # type: ignore[union-attr]  # ch is a space: at least it matches
            continue
        if not started and ch == "<" and (m := _SLACK_ENTITY.match(text, i)):
            if m.group("channel"):
                tokens.append(_Token(m.group(0), _CHANNEL, value=m.group("channel")))
            elif m.group("mention"):
                tokens.append(_Token(m.group(0), _MENTION))
            else:
                tokens.append(_Token(m.group(0), _LINK, value=_unescape(m.group("link"))))
            i = m.end()
            continue
        if ch in _QUOTES:
            if started and not after_eq:  # an apostrophe inside a word
                cur.append(ch)
                after_eq = False
                i += 1
                continue
            closers = _QUOTES[ch]
            end = next((j for j in range(i + 1, n) if text[j] in closers), -1)
            if end < 0:
                raise _Usage(
                    f"The quote {ch} at character {i + 1} is never closed. Close it, or remove it "
                    "(an apostrophe inside a word, like don't, is fine)."
                )
            quoted = quoted or not started
            started = True
            part = text[i + 1 : end]
            cur.append(part)
            after_eq = part == "="
            i = end + 1
            continue
        run = _PLAIN.match(text, i)
        assert run is not None  # ch is neither a space nor a quote
        cur.append(run.group())
        started, after_eq = True, text[run.end() - 1] == "="
        i = run.end()
    if started:
        tokens.append(_Token(_unescape("".join(cur)), quoted=quoted))
    return tokens


# ---------------------------------------------------------------------------------------------------------------------
# Flags

_ALIASES = {
    "key": "key",
    "k": "key",
    "keypair": "key",
    "key-pair": "key",
    "keyname": "key",
    "password": "password",
    "p": "password",
    "stop": "stop",
    "s": "stop",
    "reason": "reason",
    "r": "reason",
    "ticket": "ticket",
    "t": "ticket",
    "incident": "ticket",
    "notify": "notify",
    "n": "notify",
    "image": "image",
    "i": "image",
    "server": "server",
    "help": "help",
    "h": "help",
}
_EXAMPLES = {
    "key": "the name of a key pair, e.g. --key ops-key",
    "stop": "soft or hard, e.g. --stop soft",
    "reason": 'why the OS must change, e.g. --reason "disk full after upgrade"',
    "ticket": "a ticket or incident ID, e.g. --ticket INC-1234",
    "notify": "one or more channels, e.g. --notify #incidents",
    "image": 'an image name or ID, e.g. --image "Ubuntu 22.04"',
    "server": "a server name or ID, e.g. --server web-01",
}
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{8,}$")
_CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")  # Slack: at most 80 characters


def _flag(token: _Token) -> tuple[str, str | None] | None:
    """`(canonical name, inline value)` for a flag token, None for a word; raises on an unknown flag."""
    return read_flag(token, _ALIASES, _EXAMPLES)


def read_flag(
    token: _Token, aliases: Mapping[str, str], examples: Mapping[str, str], where: str = ""
) -> tuple[str, str | None] | None:
    """A flag token as `(canonical name, inline value)` by `aliases`, None for a word. An unknown flag raises, with
    the closest known one or the list of `examples`' names; `where` names the command (" for a fleet")."""
    if token.kind != _WORD or token.quoted or token.text[:1] not in _FLAG_STARTS:
        return None
    m = _FLAG.match(token.text)
    if not m:
        return None
    name = m.group("name").lower()
    canonical = aliases.get(name)
    if canonical is None:
        long_names = sorted({k for k in aliases if len(k) > 1})
        close = difflib.get_close_matches(name, long_names, n=1, cutoff=0.6)
        flag = token.text.split("=", 1)[0]
        hint = f" Did you mean --{close[0]}?" if close else f" Known options: {', '.join('--' + k for k in examples)}."
        raise _Usage(f"Unknown option {_show(flag)}{where}.{hint}")
    return canonical, m.group("value")


def _show(text: str, limit: int = 40) -> str:
    return f"“{text if len(text) <= limit else text[: limit - 1] + '…'}”"


def _channel_refs(token: _Token) -> tuple[list[str], list[str]] | None:
    """(ids, names) if the token names channels (or only mentions people, which notify ignores); else None."""
    if token.kind == _CHANNEL:
        return [token.value], []
    if token.kind == _MENTION:
        return [], []
    if token.kind != _WORD:
        return None
    ids: list[str] = []
    names: list[str] = []
    for part in token.text.split(","):
        part = part.strip()
        if not part or part.startswith("@"):
            continue
        if part.startswith("#") and _CHANNEL_NAME.match(part[1:].lower()):
            names.append(part[1:].lower())
        elif _CHANNEL_ID.match(part):
            ids.append(part)
        else:
            return None
    return ids, names


_WHAT = {
    "server": "A server name",
    "image": "An image name",
    "key": "A key pair name",
    "reason": "The reason",
    "ticket": "The ticket",
}
_WHY = {
    "server": "ECS names have at most 64; give the exact name or the server ID",
    "image": "image names have at most 128; give the exact name or the image ID",
    "key": "key pair names have at most 64",
    "reason": "the form takes at most 500; say it shorter, or link a ticket with --ticket",
    "ticket": "give the ticket ID, not its text",
}


def _check_length(name: str, value: str | None) -> None:
    limit = MAX_LENGTHS.get(name)
    if limit is None or value is None or len(value.strip()) <= limit:
        return
    raise _Usage(f"{_WHAT[name]} of {len(value.strip())} characters is too long: {_WHY[name]}.")


FlagOf = Callable[[_Token], tuple[str, str | None] | None]


class OptionsBuilder:
    """What /changeos and /changeos fleet read alike: --notify's channels, --reason's words, and single values,
    each given at most once."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.password = False
        self.notify: list[str] = []
        self.notify_names: list[str] = []

    def set_once(self, name: str, value: str) -> None:
        if name in self.values:
            raise _Usage(f"--{name} is given twice; give it once.")
        self.values[name] = value

    def set_value(self, name: str, value: str) -> None:
        self.set_once(name, value)

    def take(
        self, name: str, tokens: list[_Token], i: int, inline: str | None, flag_of: FlagOf, examples: Mapping[str, str]
    ) -> int:
        """Read flag `name`'s value(s) from `inline` and the tokens from `i`; the index after what it took."""
        if name == "notify":
            ids, names, i = _take_channels(tokens, i, inline, flag_of, examples["notify"])
            self.notify += ids
            self.notify_names += names
            return i
        if name == "reason":
            reason, i = _take_words(name, tokens, i, inline, flag_of, examples["reason"])
            self.set_once("reason", reason)
            return i
        value, i = _take_value(name, tokens, i, inline, flag_of, examples[name])
        self.set_value(name, value)
        return i


class _ChangeBuilder(OptionsBuilder):
    def __init__(self) -> None:
        super().__init__()
        self.positionals: list[str] = []

    def build(self) -> ChangeCommand:
        if self.password and "key" in self.values:
            raise _Usage(
                "Choose one login method: --key NAME (a key pair) or --password (an admin password), not both."
            )
        server = self.values.get("server")
        image = self.values.get("image")
        free = [slot for slot, given in (("server", server), ("image", image)) if given is None]
        words = [w for w in self.positionals if w.strip()]
        if len(words) > len(free):
            shown = ", ".join(_show(w, 24) for w in words[:3])
            more = f" and {len(words) - 3} more" if len(words) > 3 else ""
            raise _Usage(
                f"Too many words: /changeos takes one server and one image, but got {len(words)}: {shown}{more}. "
                'Quote names with spaces ("Ubuntu 22.04 64bit") and put the reason after --reason.'
            )
        slots = dict(zip(free, words, strict=False))
        server = server or slots.get("server")
        image = image or slots.get("image")
        for name, value in (("server", server), ("image", image), *self.values.items()):
            _check_length(name, value)
        if len(self.notify) + len(self.notify_names) > MAX_NOTIFY:
            raise _Usage(f"--notify takes at most {MAX_NOTIFY} channels; name fewer.")
        stop: StopType | None = None
        if "stop" in self.values:
            raw = self.values["stop"].strip().upper()
            if raw not in StopType.__members__:
                raise _Usage(f"--stop takes soft or hard, not {_show(self.values['stop'])}.")
            stop = StopType(raw)
        reason = (self.values.get("reason") or "").strip() or None
        ticket = (self.values.get("ticket") or "").strip() or None
        return ChangeCommand(
            server=(server or "").strip() or None,
            image=(image or "").strip() or None,
            keyname=self.values.get("key"),
            password=self.password,
            stop=stop,
            reason=reason,
            ticket=ticket,
            notify=list(dict.fromkeys(self.notify)),
            notify_names=list(dict.fromkeys(self.notify_names)),
        )


def _parse_change(tokens: list[_Token]) -> Command:
    b = _ChangeBuilder()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag = _flag(token)
        i += 1
        if flag is None:
            if token.kind == _LINK:
                b.positionals.append(token.value)
            elif token.kind in (_CHANNEL, _MENTION):
                raise _Usage(
                    f"{_show(token.text)} is a channel or a person, not a server. To tell a channel, write "
                    "--notify before it."
                )
            else:
                b.positionals.append(token.text)
            continue
        name, inline = flag
        if name == "help":
            return HelpCommand()
        if name == "password":
            if inline is not None:
                raise _Usage(
                    "--password takes no value: the bot asks for the password in a private form. "
                    "Never type a password in a command."
                )
            if b.password:
                raise _Usage("--password is given twice; give it once.")
            b.password = True
            if i < len(tokens) and _flag(tokens[i]) is None and tokens[i].kind == _WORD:
                raise _Usage(
                    "--password takes no value: the bot asks for the password in a private form. Put the server "
                    "and image before the options (/changeos web-01 ubuntu-22 --password), and never type a "
                    "password in a command."
                )
            continue
        i = b.take(name, tokens, i, inline, _flag, _EXAMPLES)  # notify, reason, key, stop, ticket, image, server
    return b.build()


def _take_channels(
    tokens: list[_Token], i: int, inline: str | None, flag_of: FlagOf, example: str
) -> tuple[list[str], list[str], int]:
    """`--notify`'s channels (ids, names): the inline one, then every channel token up to the next flag; and the
    index of the first token after them."""
    ids: list[str] = []
    names: list[str] = []
    found = False
    if inline is not None:
        refs = _channel_refs(_Token(inline))
        if refs is None:
            raise _Usage(f"--notify takes channels like #incidents, not {_show(inline)}.")
        ids += refs[0]
        names += refs[1]
        found = True
    while i < len(tokens) and flag_of(tokens[i]) is None and (refs := _channel_refs(tokens[i])) is not None:
        ids += refs[0]
        names += refs[1]
        found = True
        i += 1
    if not found:
        raise _Usage(f"--notify needs {example}.")
    return ids, names, i


def _take_words(
    name: str, tokens: list[_Token], i: int, inline: str | None, flag_of: FlagOf, example: str
) -> tuple[str, int]:
    """A free-text flag (`--reason`): every word up to the next flag, links as their targets."""
    parts = [inline] if inline is not None else []
    while i < len(tokens) and flag_of(tokens[i]) is None:
        parts.append(tokens[i].value if tokens[i].kind == _LINK else tokens[i].text)
        i += 1
    if not parts:
        raise _Usage(f"--{name} needs {example}.")
    return " ".join(parts), i


def _take_value(
    name: str, tokens: list[_Token], i: int, inline: str | None, flag_of: FlagOf, example: str
) -> tuple[str, int]:
    """A single-value flag: `--name=value` or the next token (not a flag, channel or person), never blank."""
    if inline is None:
        if i >= len(tokens) or flag_of(tokens[i]) is not None or tokens[i].kind in (_CHANNEL, _MENTION):
            raise _Usage(f"--{name} needs a value: {example}.")
        nxt = tokens[i]
        inline = nxt.value if nxt.kind == _LINK else nxt.text
        i += 1
    if not inline.strip():
        raise _Usage(f"--{name} needs a value: {example}.")
    return inline.strip(), i


def _request_id(raw: str) -> str | None:
    candidate = raw.strip().upper()
    if not candidate.startswith("CR-") and len(candidate) == 6 and all(c in ID_ALPHABET for c in candidate):
        candidate = "CR-" + candidate
    return candidate if ID_PATTERN.match(candidate) else None


def _parse(text: str) -> Command:
    tokens = _tokenize(text)
    if not tokens:
        return HelpCommand()
    head = tokens[0]
    verb = head.text.lower() if head.kind == _WORD and not head.quoted else ""
    args = tokens[1:]
    if verb in ("help", "?"):
        return HelpCommand()
    if verb == "list":
        if args:
            raise _Usage("/changeos list takes nothing after it. For one request, use /changeos status CR-….")
        return ListCommand()
    if verb == "status":
        if len(args) > 1:
            raise _Usage("/changeos status takes one request ID or one server name, e.g. /changeos status web-01.")
        if not args:
            return StatusCommand(None)
        target = args[0].text.strip()
        if len(target) > MAX_LENGTHS["server"]:
            raise _Usage(
                f"/changeos status takes a request ID or a server name (at most {MAX_LENGTHS['server']} characters)."
            )
        return StatusCommand(_request_id(target) or target or None)
    if verb in ("cancel", "rollback"):
        request_id = _one_request_id(verb, args)
        return CancelCommand(request_id) if verb == "cancel" else RollbackCommand(request_id)
    if verb == "backups":
        if len(args) != 1:
            raise _Usage("/changeos backups takes one server name or ID, e.g. /changeos backups web-01.")
        server = args[0].text.strip()
        if not server or len(server) > MAX_LENGTHS["server"]:
            raise _Usage(f"/changeos backups takes a server name or ID (at most {MAX_LENGTHS['server']} characters).")
        return BackupsCommand(server)
    if verb == "history":
        return _parse_history(args)
    return _parse_change(tokens)


_HISTORY_ALIASES = {"mine": "mine", "m": "mine", "since": "since", "s": "since", "help": "help", "h": "help"}
_HISTORY_EXAMPLES = {"mine": "no value: only your requests", "since": "an age or a date, e.g. --since 7d"}


def _parse_history(args: list[_Token]) -> Command:
    def flag_of(token: _Token) -> tuple[str, str | None] | None:
        return read_flag(token, _HISTORY_ALIASES, _HISTORY_EXAMPLES, " for /changeos history")

    server: str | None = None
    mine = False
    since: Since | None = None
    i = 0
    while i < len(args):
        token = args[i]
        flag = flag_of(token)
        i += 1
        if flag is None:
            if server is not None:
                raise _Usage("/changeos history takes one server, e.g. /changeos history web-01 --since 7d.")
            server = token.value if token.kind == _LINK else token.text.strip()
            _check_length("server", server)
            continue
        name, inline = flag
        if name == "help":
            return HelpCommand()
        if name == "mine":
            if inline is not None:
                raise _Usage("--mine takes no value: it keeps only the requests you made.")
            mine = True
            continue
        if since is not None:
            raise _Usage("--since is given twice; give it once.")
        value, i = _take_value("since", args, i, inline, flag_of, _HISTORY_EXAMPLES["since"])
        try:
            since = parse_since(value)
        except ValueError as exc:
            raise _Usage(str(exc)) from None
    return HistoryCommand(server=server or None, mine=mine, since=since)


def _one_request_id(verb: str, args: list[_Token]) -> str:
    example = f"/changeos {verb} CR-7KQ2MX"
    if not args:
        raise _Usage(f"/changeos {verb} needs the request ID, e.g. {example} (see /changeos list).")
    if len(args) > 1:
        raise _Usage(f"/changeos {verb} takes one request ID, e.g. {example}.")
    request_id = _request_id(args[0].text)
    if request_id is None:
        raise _Usage(f"{_show(args[0].text)} is not a request ID. IDs look like CR-7KQ2MX; /changeos list shows yours.")
    return request_id


def parse_command(text: str) -> Command:
    """Parse the text after `/changeos`. Total: every input gives a command or a `UsageError` of bounded length."""
    text = text or ""
    if len(text) > MAX_TEXT:
        return UsageError(
            f"The command is {len(text)} characters long; Slack sends at most {MAX_TEXT}. Keep the reason short "
            "(at most 500 characters), or leave it out and write it in the form."
        )
    try:
        return _parse(text)
    except _Usage as exc:
        message = str(exc)
        return UsageError(message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…")
