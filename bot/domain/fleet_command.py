"""`/changeos fleet …`: the fleet command's parser, on the single command's tokenizer. Pure, total, never raises.

`parse(text)` is the entry point for the whole `/changeos` text: `fleet …` gives a `FleetCommand` (or a
`UsageError`), anything else goes to `command.parse_command` unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.domain.command import (
    _CHANNEL,
    _LINK,
    _MENTION,
    _WORD,
    MAX_MESSAGE,
    MAX_TEXT,
    Command,
    OptionsBuilder,
    UsageError,
    _check_length,
    _show,
    _Token,
    _tokenize,
    _Usage,
    parse_command,
    read_flag,
)
from bot.domain.request import StopType
from bot.domain.waves import DEFAULT_WAVES, Wave, WaveError, parse_waves

FLEET_USAGE = (
    "/changeos fleet SERVERS|PATTERN|--tag KEY=VALUE --image IMAGE [--key NAME | --password] "
    "[--waves 1,10%,rest] [--max-failures 1] [--parallel 5] [--pause] [--reason TEXT] [--ticket ID] "
    "[--notify #channel …]"
)
MAX_SERVERS = 1000  # a selector naming more is refused here; the policy's max_fleet_size bounds the fleet itself
MAX_PARALLEL = 50
MAX_TAGS = 10  # ECS allows at most 10 tags per server, so more conditions can never match
DEFAULT_MAX_FAILURES = 1
DEFAULT_PARALLEL = 5

# ECS tag rules (reference §23): key ≤36 of letters, digits, `_`, `-` (CJK allowed); value ≤43, also `.`.
_TAG_KEY = re.compile(r"^[\w-]{1,36}$")
_TAG_VALUE = re.compile(r"^[\w.-]{0,43}$")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class TagFilter:
    key: str
    value: str | None = None  # None: any value

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True, slots=True)
class FleetSelector:
    """Exactly one of: server names or IDs (in the order given), name patterns, or tags (all must match)."""

    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    tags: tuple[TagFilter, ...] = ()

    @property
    def kind(self) -> str:
        return "tag" if self.tags else "pattern" if self.patterns else "names"

    def describe(self) -> str:
        if self.tags:
            return "servers tagged " + " and ".join(f"`{t}`" for t in self.tags)
        if self.patterns:
            return "servers named " + " or ".join(f"`{p}`" for p in self.patterns)
        return f"{len(self.names)} named server{'s' if len(self.names) != 1 else ''}"


@dataclass(frozen=True, slots=True)
class FleetCommand:
    selector: FleetSelector
    image: str
    keyname: str | None = None
    password: bool = False
    waves: tuple[Wave, ...] = field(default_factory=lambda: parse_waves(DEFAULT_WAVES))
    max_failures: int = DEFAULT_MAX_FAILURES
    parallel: int = DEFAULT_PARALLEL
    pause: bool = False
    stop: StopType | None = None
    reason: str | None = None
    ticket: str | None = None
    notify: list[str] = field(default_factory=list)
    notify_names: list[str] = field(default_factory=list)


_ALIASES = {
    "image": "image",
    "i": "image",
    "key": "key",
    "k": "key",
    "keypair": "key",
    "key-pair": "key",
    "password": "password",
    "p": "password",
    "waves": "waves",
    "wave": "waves",
    "w": "waves",
    "max-failures": "max-failures",
    "max_failures": "max-failures",
    "maxfailures": "max-failures",
    "parallel": "parallel",
    "parallelism": "parallel",
    "pause": "pause",
    "tag": "tag",
    "stop": "stop",
    "s": "stop",
    "reason": "reason",
    "r": "reason",
    "ticket": "ticket",
    "t": "ticket",
    "notify": "notify",
    "n": "notify",
    "help": "help",
    "h": "help",
}
_EXAMPLES = {
    "image": 'the image name or ID for every server, e.g. --image "Ubuntu 22.04"',
    "key": "the name of a key pair, e.g. --key ops-key",
    "waves": "wave sizes, e.g. --waves 1,10%,rest",
    "max-failures": "how many failed servers halt the rollout, e.g. --max-failures 1",
    "parallel": f"how many servers change at once (1 to {MAX_PARALLEL}), e.g. --parallel 5",
    "tag": "a server tag, e.g. --tag role=web",
    "stop": "soft or hard, e.g. --stop soft",
    "reason": 'why the OS must change, e.g. --reason "monthly patching"',
    "ticket": "a ticket or incident ID, e.g. --ticket INC-1234",
    "notify": "one or more channels, e.g. --notify #incidents",
}


def _fleet_flag(token: _Token) -> tuple[str, str | None] | None:
    return read_flag(token, _ALIASES, _EXAMPLES, " for a fleet")


def _positive(name: str, raw: str, high: int) -> int:
    value = raw.strip()
    if not value.isdigit() or not 1 <= int(value) <= high:
        raise _Usage(f"--{name} takes a whole number from 1 to {high}, not {_show(raw)}: {_EXAMPLES[name]}.")
    return int(value)


def _tag(raw: str) -> TagFilter:
    key, sep, value = raw.strip().partition("=")
    key, value = key.strip(), value.strip()
    if not _TAG_KEY.match(key):
        raise _Usage(
            f"{_show(raw)} is not a tag: a tag key has 1 to 36 letters, digits, - or _. Write {_EXAMPLES['tag']}."
        )
    if sep and not _TAG_VALUE.match(value):
        raise _Usage(f"The tag value {_show(value)} is not valid: at most 43 letters, digits, ., - or _.")
    return TagFilter(key, value if sep else None)


class _FleetBuilder(OptionsBuilder):
    def __init__(self) -> None:
        super().__init__()
        self.pause = False
        self.tags: list[TagFilter] = []
        self.words: list[str] = []

    def set_value(self, name: str, value: str) -> None:
        if name == "tag":  # repeatable: every tag must match
            self.tags.append(_tag(value))
        else:
            self.set_once(name, value)

    def selector(self) -> FleetSelector:
        names: list[str] = []
        for word in self.words:
            names += [part.strip() for part in word.split(",") if part.strip()]
        if self.tags and names:
            raise _Usage(
                f"Choose one way to select the fleet: --tag {self.tags[0]} or the names {_show(names[0], 24)}…, "
                "not both."
            )
        if self.tags:
            keys = [t.key for t in self.tags]
            if len(set(keys)) != len(keys):
                raise _Usage("Each tag key can be given once; a server has one value per key.")
            if len(self.tags) > MAX_TAGS:
                raise _Usage(f"At most {MAX_TAGS} tags: a server carries at most {MAX_TAGS}.")
            return FleetSelector(tags=tuple(self.tags))
        if not names:
            raise _Usage(
                "The fleet needs servers: list names or IDs (web-01 web-02), a name pattern (web-*), or a tag "
                "(--tag role=web)."
            )
        if len(names) > MAX_SERVERS:
            raise _Usage(f"{len(names)} servers are named; a fleet command takes at most {MAX_SERVERS}.")
        for name in names:
            _check_length("server", name)
        patterns = [n for n in names if _GLOB.search(n)]
        if patterns and len(patterns) != len(names):
            plain = next(n for n in names if not _GLOB.search(n))
            raise _Usage(
                f"Choose one way to select the fleet: the pattern {_show(patterns[0], 24)} or names like "
                f"{_show(plain, 24)}, not both. A pattern like web-0[1-3] can name a few servers too."
            )
        unique = list(dict.fromkeys(names))
        return FleetSelector(patterns=tuple(unique)) if patterns else FleetSelector(names=tuple(unique))

    def build(self) -> FleetCommand:
        selector = self.selector()
        if self.password and "key" in self.values:
            raise _Usage(
                "Choose one login method: --key NAME (a key pair) or --password (an admin password), not both."
            )
        image = (self.values.get("image") or "").strip()
        if not image:
            raise _Usage(f"A fleet needs the target image: {_EXAMPLES['image']}.")
        for name in ("image", "key", "reason", "ticket"):
            _check_length(name, self.values.get(name))
        try:
            waves = parse_waves(self.values.get("waves", DEFAULT_WAVES))
        except WaveError as exc:
            raise _Usage(str(exc)) from None
        stop: StopType | None = None
        if "stop" in self.values:
            raw = self.values["stop"].strip().upper()
            if raw not in StopType.__members__:
                raise _Usage(f"--stop takes soft or hard, not {_show(self.values['stop'])}.")
            stop = StopType(raw)
        max_failures = _positive("max-failures", self.values.get("max-failures", "1"), MAX_SERVERS)
        parallel = _positive("parallel", self.values.get("parallel", str(DEFAULT_PARALLEL)), MAX_PARALLEL)
        return FleetCommand(
            selector=selector,
            image=image,
            keyname=self.values.get("key"),
            password=self.password,
            waves=waves,
            max_failures=max_failures,
            parallel=parallel,
            pause=self.pause,
            stop=stop,
            reason=(self.values.get("reason") or "").strip() or None,
            ticket=(self.values.get("ticket") or "").strip() or None,
            notify=list(dict.fromkeys(self.notify)),
            notify_names=list(dict.fromkeys(self.notify_names)),
        )


def _no_value(name: str, tokens: list[_Token], i: int, inline: str | None, b: _FleetBuilder) -> None:
    if inline is not None:
        why = "the bot asks for the password in a private form; never type a password" if name == "password" else ""
        raise _Usage(f"--{name} takes no value{': ' + why if why else ''}.")
    if name == "password" and i < len(tokens) and _fleet_flag(tokens[i]) is None and tokens[i].kind == _WORD:
        raise _Usage(
            "--password takes no value: the bot asks for the password in a private form. Put the servers before "
            "the options, and never type a password in a command."
        )
    if getattr(b, name):
        raise _Usage(f"--{name} is given twice; give it once.")
    setattr(b, name, True)


def _parse_fleet(tokens: list[_Token]) -> FleetCommand | UsageError | None:
    """None means `--help`: the caller shows the help."""
    b = _FleetBuilder()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag = _fleet_flag(token)
        i += 1
        if flag is None:
            if token.kind in (_CHANNEL, _MENTION):
                raise _Usage(
                    f"{_show(token.text)} is a channel or a person, not a server. To tell a channel, write "
                    "--notify before it."
                )
            b.words.append(token.value if token.kind == _LINK else token.text)
            continue
        name, inline = flag
        if name == "help":
            return None
        if name in ("password", "pause"):
            _no_value(name, tokens, i, inline, b)
            continue
        i = b.take(name, tokens, i, inline, _fleet_flag, _EXAMPLES)
    return b.build()


def _fleet_error(message: str) -> UsageError:
    return UsageError(message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…", FLEET_USAGE)


def parse(text: str) -> Command | FleetCommand:
    """Parse the text after `/changeos`, fleet commands included. Total: a command or a bounded `UsageError`."""
    text = text or ""
    words = text.split(None, 1)
    if not words or words[0].lower() != "fleet" or len(text) > MAX_TEXT:
        return parse_command(text)
    try:
        tokens = _tokenize(text)
    except _Usage as exc:
        return _fleet_error(str(exc))
    try:
        result = _parse_fleet(tokens[1:])
    except _Usage as exc:
        return _fleet_error(str(exc))
    return parse_command("help") if result is None else result
