"""`ecsbot playground`: a local web page that plays Slack for the real bot, against the simulator.

The page shows what the fake Slack recorded (channels, threads, ephemeral messages, the open modal) and sends what a
person does to a small API here, which turns it into the signed requests Slack itself would send to the bot.
"""
