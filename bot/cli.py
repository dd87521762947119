"""The `ecsbot` command: run the bot, the simulator, the offline demo or playground, check the configuration, or make
a key.

A start-up problem is one sentence on stderr and exit code 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from bot.config import port_number, settings_problem
from bot.domain.since import Since, parse_since


def _port_argument(value: str) -> int:
    try:
        return port_number(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number: give one from 1 to 65535.") from None


def _since_argument(value: str) -> Since:
    try:
        return parse_since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecsbot", description="Change the OS of Huawei Cloud ECS servers from Slack.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the bot (Socket Mode when SLACK_APP_TOKEN is set, else HTTP)")
    run.add_argument("--port", type=_port_argument, default=None, help="HTTP port (default $PORT, then 3000)")
    run.add_argument("--host", default="0.0.0.0", help="HTTP bind address (default 0.0.0.0)")

    sim = sub.add_parser("simulator", help="run the Huawei Cloud simulator (ECS, IMS, EVS, jobs) on one port")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--fixtures", type=Path, default=None, help="fixtures TOML (default config/simulator.toml)")
    sim.add_argument("--speed", type=float, default=1.0, help="time scale: 60 makes a 3-minute change take 3 s")
    sim.add_argument("--seed", type=int, default=0, help="seed for timing and faults, for repeatable runs")
    sim.add_argument(
        "--catalogue", type=int, default=None, help="generated IMS images besides the fixtures' (default: fixtures')"
    )

    demo = sub.add_parser("demo", help="run the whole flow offline and print what people in Slack would see")
    demo.add_argument("--password", action="store_true", help="use an admin password instead of a key pair")
    demo.add_argument("--fail", action="store_true", help="let the cloud fail the job and show the explanation")
    demo.add_argument("--rollback", action="store_true", help="take a backup first, then roll back to it")
    demo.add_argument("--fleet", action="store_true", help="a fleet of 3 servers in 2 waves, one approval")
    demo.add_argument("--no-color", action="store_true", help="plain text even on a terminal")
    demo.add_argument("--speed", type=float, default=None, help="simulator time scale (default 60: ~5 s a change)")

    play = sub.add_parser("playground", help="a local web page that plays Slack for the bot, offline, in a browser")
    play.add_argument("--policy", type=Path, default=None, help="a policy TOML to load (default: the embedded one)")
    play.add_argument("--port", type=int, default=8765, help="the page's port (0: any free port)")
    play.add_argument("--host", default="127.0.0.1")
    play.add_argument("--speed", type=float, default=20.0, help="simulator time scale (20: a change takes ~15 s)")
    play.add_argument("--seed", type=int, default=7, help="simulator seed, for repeatable timing and faults")

    check = sub.add_parser("check", help="validate the environment and the policy file")
    check.add_argument("--online", action="store_true", help="also make one cheap call to the cloud and to Slack")

    backups = sub.add_parser("backups", help="the bot's backups of system disks (IMS images)")
    backups_sub = backups.add_subparsers(dest="backups_command", required=True)
    prune = backups_sub.add_parser("prune", help="delete the bot's backups past the policy's retention, now")
    prune.add_argument("--dry-run", action="store_true", help="only print what would be deleted")

    sub.add_parser("gen-key", help="print a new random key for ECSBOT_SECRET_KEY (Fernet, 44 characters)")
    sub.add_parser("rotate-key", help="re-encrypt every stored secret with ECSBOT_SECRET_KEY (old keys decrypt)")

    retention = sub.add_parser("retention", help="requests and audit rows past ECSBOT_RETENTION_DAYS")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    retention_sub.add_parser("run", help="delete them now (the bot's leader does it every hour)")

    audit = sub.add_parser("audit", help="the audit trail of every request")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_sub.add_parser("export", help="stream it as JSON Lines or CSV, oldest first")
    export.add_argument("--since", type=_since_argument, default=None, help="an age (7d, 12h, 2w) or a date")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="default jsonl")
    export.add_argument("--output", type=Path, default=None, help="a file to write (default: stdout)")
    return parser


def _fail(message: str) -> int:
    print(f"ecsbot: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "simulator":
            from sandbox.simulator.server import run_forever

            asyncio.run(
                run_forever(
                    fixtures=args.fixtures,
                    host=args.host,
                    port=args.port,
                    speed=args.speed,
                    seed=args.seed,
                    catalogue=args.catalogue,
                )
            )
            return 0
        if args.command == "run":
            from bot.app import run_bot

            try:
                port = args.port or port_number(os.environ.get("PORT", "3000"), "PORT")
            except ValueError as exc:
                return _fail(f"cannot start: {exc}")
            try:
                return asyncio.run(run_bot(host=args.host, port=port))
            except ValidationError as exc:  # settings that cannot be read: one sentence, as `check` says it
                return _fail(settings_problem(exc))
        if args.command == "demo":
            from sandbox.devtools.demo import run_demo, run_fleet_demo

            pace = {} if args.speed is None else {"speed": args.speed}
            if args.fleet:
                return asyncio.run(run_fleet_demo(color=not args.no_color, **pace))
            return asyncio.run(
                run_demo(
                    password=args.password, fail=args.fail, color=not args.no_color, rollback=args.rollback, **pace
                )
            )
        if args.command == "playground":
            from sandbox.playground.server import run_playground

            return asyncio.run(
                run_playground(policy=args.policy, host=args.host, port=args.port, speed=args.speed, seed=args.seed)
            )
        if args.command == "check":
            from bot.checks import run_checks

            return asyncio.run(run_checks(online=args.online))
        if args.command == "backups":
            from bot.app import run_prune

            try:
                return asyncio.run(run_prune(dry_run=args.dry_run))
            except ValidationError as exc:
                return _fail(settings_problem(exc))
        if args.command in ("retention", "audit", "rotate-key"):
            return _housekeeping(args)
        if args.command == "gen-key":
            from bot.secretbox import SecretBox

            print(SecretBox.generate_key())
            return 0
    except KeyboardInterrupt:
        return 130
    return 2


def _housekeeping(args: argparse.Namespace) -> int:
    """`retention run`, `audit export`, `rotate-key`: one-off commands on the bot's database, with its settings."""
    from bot.app import run_audit_export, run_retention, run_rotate_key

    try:
        if args.command == "retention":
            return asyncio.run(run_retention())
        if args.command == "rotate-key":
            return asyncio.run(run_rotate_key())
        if args.output is None:
            return asyncio.run(run_audit_export(since=args.since, fmt=args.format, out=sys.stdout))
        try:
            out = args.output.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            return _fail(f"cannot write {args.output}: {exc.strerror or exc}. Give a path in a folder you can write.")
        with out:
            return asyncio.run(run_audit_export(since=args.since, fmt=args.format, out=out))
    except ValidationError as exc:
        return _fail(settings_problem(exc))


if __name__ == "__main__":
    sys.exit(main())
