"""Services: the rules that need time, state or I/O through an interface, over the pure domain; no Slack, no HTTP."""
