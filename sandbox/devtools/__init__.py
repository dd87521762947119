"""Test and demo tooling that stands in for Slack: `fake_slack` (a fake Web API) and `slack_requests`
(signed request builders). Never imported by production code paths; tests, benchmarks, `ecsbot demo` and
sandbox mode (`python -m sandbox.devtools.fake_slack`) use it. Submodules are not imported here, so running one
with `-m` stays clean."""
