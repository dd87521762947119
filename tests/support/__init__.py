"""What many tests share: request factories, waiting with a deadline, the bot as a subprocess, Slack payloads.

One copy each, so a test reads as what it checks, not as how it builds its inputs."""
