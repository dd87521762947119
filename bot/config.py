"""The bot's settings, read from the environment (and `.env`), named as DESIGN §4 fixes them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    log_level: str = Field(default="INFO", validation_alias="ECSBOT_LOG_LEVEL")

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

    def to_env(self) -> dict[str, str]:
        """The environment variables that make another `ecsbot` process read exactly these settings."""
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            alias = field.validation_alias
            key = alias.choices[0] if isinstance(alias, AliasChoices) else alias
            env[str(key)] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env
