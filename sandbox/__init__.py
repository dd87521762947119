"""The sandbox: a Huawei Cloud simulator, a fake Slack, signed Slack request builders, the local stack and the demo.

Kept out of the production package `bot`: production code never imports it (an import-linter contract checks that);
only the `ecsbot simulator` and `ecsbot demo` commands load it, lazily.
"""
