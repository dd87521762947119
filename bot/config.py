"""The bot's settings, read from the environment (and `.env`), named as DESIGN §4 fixes them.

Every secret setting X also accepts X_FILE, a path whose content is the value (Kubernetes secrets, systemd
credentials); setting both is refused. A bad setting is explained by `settings_problem` in one sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.logs import LEVELS

# The secret settings that may come from a file: field name → the file field that names the file.
SECRET_FILES = {
    "slack_bot_token": "slack_bot_token_file",
    "slack_signing_secret": "slack_signing_secret_file",
    "slack_app_token": "slack_app_token_file",
    "slack_client_secret": "slack_client_secret_file",
    "huaweicloud_sk": "huaweicloud_sk_file",
    "huaweicloud_security_token": "huaweicloud_security_token_file",
    "secret_key": "secret_key_file",
    "secret_keys_old": "secret_keys_old_file",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")

    huaweicloud_ak: str | None = Field(default=None, validation_alias="HUAWEICLOUD_SDK_AK")
    huaweicloud_sk: SecretStr | None = Field(default=None, validation_alias="HUAWEICLOUD_SDK_SK")
    huaweicloud_project_id: str | None = Field(default=None, validation_alias="HUAWEICLOUD_PROJECT_ID")
    huaweicloud_region: str = Field(default="my-kualalumpur-1", validation_alias="HUAWEICLOUD_REGION")
    huaweicloud_user_id: str | None = Field(default=None, validation_alias="HUAWEICLOUD_USER_ID")
    huaweicloud_security_token: SecretStr | None = Field(
        default=None, validation_alias="HUAWEICLOUD_SDK_SECURITY_TOKEN"
    )
    # "env": HUAWEICLOUD_SDK_AK/SK (+ security token); "agency": the ECS metadata service's temporary keys.
    huaweicloud_credentials: Literal["env", "agency"] = Field(default="env", validation_alias="HUAWEICLOUD_CREDENTIALS")
    metadata_url: str = Field(default="http://169.254.169.254", validation_alias="ECSBOT_METADATA_URL")
    ecs_endpoint: str | None = Field(default=None, validation_alias="ECS_ENDPOINT")
    ims_endpoint: str | None = Field(default=None, validation_alias="IMS_ENDPOINT")
    evs_endpoint: str | None = Field(default=None, validation_alias="EVS_ENDPOINT")

    db_path: Path = Field(default=Path("ecsbot.db"), validation_alias="ECSBOT_DB")
    # postgresql://user:password@host:port/dbname: replicas share it (README "Running more than one replica");
    # unset, the bot keeps its SQLite file at ECSBOT_DB.
    database_url: SecretStr | None = Field(default=None, validation_alias="ECSBOT_DATABASE_URL")
    # How long the tracker's leadership lasts without renewal: a dead leader's jobs wait at most this long (+2 s).
    lease_seconds: float = Field(default=20.0, ge=3, le=300, validation_alias=AliasChoices("ECSBOT_LEASE_SECONDS"))
    policy_path: Path = Field(default=Path("config/policy.toml"), validation_alias="ECSBOT_POLICY")
    secret_key: SecretStr | None = Field(default=None, validation_alias="ECSBOT_SECRET_KEY")
    public_url: str | None = Field(default=None, validation_alias="ECSBOT_PUBLIC_URL")
    # The secure password page: how long a password set there waits for the form's submission, and how long a link
    # (and the page session it turns into) works. A link never outlives the draft password it feeds.
    draft_password_minutes: float = Field(
        default=15.0, ge=5, le=120, validation_alias=AliasChoices("ECSBOT_DRAFT_PASSWORD_MINUTES")
    )
    password_link_minutes: float = Field(
        default=10.0, ge=2, le=60, validation_alias=AliasChoices("ECSBOT_PASSWORD_LINK_MINUTES")
    )
    # Sign in with Slack (OpenID Connect) for the password page: Basic Information → App Credentials.
    slack_client_id: str | None = Field(default=None, validation_alias="SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_CLIENT_SECRET")
    slack_oidc_authorize_url: str = Field(
        default="https://slack.com/openid/connect/authorize", validation_alias="SLACK_OIDC_AUTHORIZE_URL"
    )

    poll_interval: float = Field(default=10.0, gt=0, validation_alias=AliasChoices("ECSBOT_POLL_INTERVAL"))
    job_deadline: float = Field(default=1800.0, gt=0, validation_alias=AliasChoices("ECSBOT_JOB_DEADLINE"))
    ecs_rate: float = Field(default=20.0, gt=0, validation_alias=AliasChoices("ECSBOT_ECS_RATE"))
    # /metrics on a port of its own. Unset: on the bot's port in HTTP mode, not served in Socket Mode.
    metrics_port: int | None = Field(default=None, ge=0, le=65535, validation_alias="ECSBOT_METRICS_PORT")
    # How long /readyz trusts a passed cloud-credentials or Slack-token check before asking again.
    ready_cache_seconds: float = Field(default=30.0, gt=0, validation_alias=AliasChoices("ECSBOT_READY_CACHE_SECONDS"))
    log_level: str = Field(default="INFO", validation_alias="ECSBOT_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field(default="text", validation_alias="ECSBOT_LOG_FORMAT")
    # Retention: requests that ended this many days ago go, with their audit rows (each server's newest stays and
    # records the pruning); 0 keeps everything. Expired secrets go at every run whatever this says.
    retention_days: int = Field(default=400, ge=0, le=3650, validation_alias=AliasChoices("ECSBOT_RETENTION_DAYS"))
    # Key rotation: ECSBOT_SECRET_KEY encrypts; these earlier keys (comma- or newline-separated) still decrypt.
    secret_keys_old: SecretStr | None = Field(default=None, validation_alias="ECSBOT_SECRET_KEYS_OLD")

    slack_bot_token_file: Path | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN_FILE")
    slack_signing_secret_file: Path | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET_FILE")
    slack_app_token_file: Path | None = Field(default=None, validation_alias="SLACK_APP_TOKEN_FILE")
    slack_client_secret_file: Path | None = Field(default=None, validation_alias="SLACK_CLIENT_SECRET_FILE")
    huaweicloud_sk_file: Path | None = Field(default=None, validation_alias="HUAWEICLOUD_SDK_SK_FILE")
    huaweicloud_security_token_file: Path | None = Field(
        default=None, validation_alias="HUAWEICLOUD_SDK_SECURITY_TOKEN_FILE"
    )
    secret_key_file: Path | None = Field(default=None, validation_alias="ECSBOT_SECRET_KEY_FILE")
    secret_keys_old_file: Path | None = Field(default=None, validation_alias="ECSBOT_SECRET_KEYS_OLD_FILE")

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> str:
        level = str(value).strip().upper()
        if level not in LEVELS:
            raise ValueError(f"is {str(value)!r}, which is not a log level: use one of {', '.join(LEVELS)}")
        return level

    @field_validator("ecs_endpoint", "ims_endpoint", "evs_endpoint")
    @classmethod
    def _scheme_and_host_only(cls, value: str | None) -> str | None:
        """The client adds /v1/{project_id}/… itself: a path here would double it, so only scheme and host pass."""
        if value is None:
            return None
        url = value.strip()
        parts = urlsplit(url if "://" in url else "https://" + url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"is {url!r}, which is not an http(s) URL: set the scheme and host, e.g. "
                "https://ecs.my-kualalumpur-1.myhuaweicloud.com"
            )
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError(
                f"is {url}, which has a path ({parts.path or '?' + parts.query}): set only the scheme and host, "
                f"{parts.scheme}://{parts.netloc}, because the bot adds /v1/{{project_id}}/… itself"
            )
        return url

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        problems = []
        for name, file_name in SECRET_FILES.items():
            path = getattr(self, file_name)
            if path is None:
                continue
            try:
                value = _read_secret_file(env_name(file_name), path)
                if getattr(self, name) is not None:
                    raise ValueError(f"{env_name(name)} and {env_name(file_name)} are both set: keep one of the two.")
            except ValueError as exc:
                problems.append(str(exc))
                continue
            setattr(self, name, SecretStr(value))
        if problems:
            raise ValueError(" ".join(problems))
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.password_link_minutes > self.draft_password_minutes:
            raise ValueError(
                f"ECSBOT_PASSWORD_LINK_MINUTES ({self.password_link_minutes:g}) is longer than "
                f"ECSBOT_DRAFT_PASSWORD_MINUTES ({self.draft_password_minutes:g}): a link must not outlive the "
                "password it sets. Shorten the link or lengthen the draft password's lifetime."
            )
        url = self.database_url.get_secret_value() if self.database_url else None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "ECSBOT_DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/dbname); "
                "leave it unset to keep the SQLite file at ECSBOT_DB."
            )
        if bool(self.slack_client_id) != bool(self.slack_client_secret):
            raise ValueError(
                "Sign in with Slack needs both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (Basic Information → App "
                "Credentials); set both, or neither to keep the bearer link."
            )
        return self

    @property
    def database(self) -> str | Path:
        """Where the store lives: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.database_url.get_secret_value() if self.database_url else self.db_path

    @property
    def signin_enabled(self) -> bool:
        return bool(self.slack_client_id and self.slack_client_secret)

    @property
    def old_secret_keys(self) -> list[SecretStr]:
        """The earlier ECSBOT_SECRET_KEYs that still decrypt (rotation), in the order given."""
        raw = self.secret_keys_old.get_secret_value() if self.secret_keys_old else ""
        return [SecretStr(k.strip()) for k in raw.replace("\n", ",").split(",") if k.strip()]

    def secret_values(self) -> list[str]:
        """Every secret this process holds, for the log scrubber."""
        values = [self.secret_keys_old.get_secret_value()] if self.secret_keys_old else []
        values += [key.get_secret_value() for key in self.old_secret_keys]
        if self.database_url is not None:  # postgresql://user:password@host/db: the whole URL is a secret
            values.append(self.database_url.get_secret_value())
        for name in SECRET_FILES:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                values.append(value.get_secret_value())
        return values

    def to_env(self) -> dict[str, str]:
        """The environment variables that make another `ecsbot` process read exactly these settings."""
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None or name in SECRET_FILES.values():  # a value read from a file is passed as the value
                continue
            alias = field.validation_alias
            key = alias.choices[0] if isinstance(alias, AliasChoices) else alias
            env[str(key)] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env


def env_name(field_name: str) -> str:
    """The environment variable that sets a field."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return str(alias) if alias else field_name.upper()


def port_number(value: str, source: str = "--port") -> int:
    """A TCP port from the command line or $PORT, or a ValueError saying what to set."""
    text = str(value).strip()
    if text.isdigit() and int(text) <= 65535:  # 0: the system picks a free port (tests)
        return int(text)
    raise ValueError(f"{source} is {text!r}, not a port number: set it to a whole number from 1 to 65535.")


def _read_secret_file(variable: str, path: Path) -> str:
    try:
        value = path.expanduser().read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ValueError(
            f"{variable} names {path}, which does not exist: fix the path or mount the secret there."
        ) from None
    except IsADirectoryError:
        raise ValueError(f"{variable} names {path}, which is a folder: name the file that holds the secret.") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ValueError(
            f"{variable} names {path}, which the bot cannot read ({reason}): let the bot's user read it."
        ) from None
    if not value:
        raise ValueError(f"{variable} names {path}, which is empty: put the secret in it.")
    return value


def problems(exc: ValidationError) -> list[str]:
    """One sentence per bad setting, naming the variable and what to do; never the value of a secret."""
    out = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        loc = error.get("loc") or ()
        if not loc:  # a rule across settings: its message names them
            out.append(f"{message}.")
            continue
        field = str(loc[0])
        name = env_name(field) if field in Settings.model_fields else field
        out.append(f"{name} {message}." if message.startswith("is ") else f"{name}: {message}.")
    return out


def settings_problem(exc: ValidationError) -> str:
    """The start-up sentence for settings that cannot be read."""
    return "cannot start: " + " ".join(problems(exc)) + " Run `ecsbot check` to see every setting explained."
