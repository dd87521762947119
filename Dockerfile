# ecs-changeos-bot: one image for both Procfile processes.
#   web    (HTTP mode):  docker run -e PORT=3000 -p 3000:3000 --env-file bot.env -v ecsbot-data:/var/lib/ecsbot IMAGE
#   worker (Socket Mode): the same command with SLACK_APP_TOKEN in bot.env; no port needs publishing.
# Run ONE container per Slack app (see the Procfile). Mount the policy at /etc/ecsbot/policy.toml; secrets may come
# from files (SLACK_BOT_TOKEN_FILE=/run/secrets/slack-bot-token, …). `docker run … IMAGE check --online` checks it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/ecsbot
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY sandbox ./sandbox
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/ecsbot --create-home --shell /usr/sbin/nologin ecsbot \
    && mkdir -p /etc/ecsbot \
    && rm -rf /opt/ecsbot/bot /opt/ecsbot/sandbox

USER ecsbot
WORKDIR /var/lib/ecsbot
ENV PORT=3000 \
    ECSBOT_DB=/var/lib/ecsbot/ecsbot.db \
    ECSBOT_POLICY=/etc/ecsbot/policy.toml
VOLUME ["/var/lib/ecsbot"]
EXPOSE 3000

# /healthz is liveness: served in both modes on $PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

ENTRYPOINT ["ecsbot"]
CMD ["run"]
