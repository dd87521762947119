"""What Slack does to a typed slash command before sending it, with the manifest's `should_escape: true` (pure).

`&`, `<` and `>` become entities; a known `#channel` becomes `<#C…|name>`, a known `@person` `<@U…>`, a URL `<url>`.
Unknown names stay plain text, as Slack leaves what it cannot resolve.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(
    r"(?<![\w#@/])([#@])([a-z0-9][a-z0-9._-]*)"
    r"|(https?://[^\s\"]+?)(?=[.,;:!?)]*(?:[\s\"]|&lt;|&gt;|$))",  # a URL ends before quotes and trailing punctuation
    re.IGNORECASE,
)


def escape_command_text(text: str, channels: Mapping[str, str], people: Mapping[str, str]) -> str:
    """`channels` and `people` map names (without # or @) to IDs."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def swap(match: re.Match[str]) -> str:
        if match.group(3):
            return f"<{match.group(3)}>"
        sigil, name = match.group(1), match.group(2)
        if sigil == "#" and name.lower() in channels:
            return f"<#{channels[name.lower()]}|{name.lower()}>"
        if sigil == "@" and name.lower() in people:
            return f"<@{people[name.lower()]}>"
        return match.group(0)

    return _TOKEN.sub(swap, escaped)


def parse_command_line(line: str) -> tuple[str, str] | None:
    """(command, text) from what was typed into the message box, or None when it is not a slash command."""
    stripped = line.strip()
    if not stripped.startswith("/"):
        return None
    command, _, text = stripped.partition(" ")
    return command, text.strip()
