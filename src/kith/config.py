"""Instance settings, read from `KITH_*` environment variables (pydantic-settings)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set. Instance-wide choices an admin edits in the web UI
    (name, rules, registration mode) live in the database (`InstanceSettings`)."""

    model_config = SettingsConfigDict(env_prefix="KITH_", env_file=".env", extra="ignore")

    domain: str = "localhost:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    https: bool = False
    var_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str = ""
    # Namespace of this instance's Redis channels: instances (or test runs) sharing a Redis
    # server must each have their own.
    redis_prefix: str = "kith:"
    secret_key: str = ""
    media_dir: Path | None = None
    mail_dir: Path | None = None
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "kith@localhost"
    smtp_starttls: bool = True
    max_post_chars: int = Field(default=5000, ge=100, le=100_000)
    max_poll_options: int = 10
    max_avatar_bytes: int = 8 * 1024 * 1024
    max_image_bytes: int = 16 * 1024 * 1024  # an image attached to a post
    run_worker: bool = True
    login_ip_limit: int = 25
    login_account_limit: int = 10
    login_window_seconds: int = 300
    log_level: str = "info"
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=60)
    # permessage-deflate on the streaming API's WebSockets. Off by default, as Mastodon's
    # streaming server has it: every frame is compressed once per client, which for a post
    # reaching 1,000 open streams cost a third of the 250 ms it should take (bench/api.py).
    stream_compression: bool = False
    # Outbound HTTP (kith.net). Off by default: fetching loopback/private addresses is how
    # SSRF attacks reach internal services. Tests and local federation turn one of them on.
    federation_allow_private: bool = False  # any private/loopback address, and plain http
    # Comma-separated hosts ("peer.lan", "127.0.0.2:8001") or networks ("127.0.0.0/8") that
    # may be reached even though private, and over plain http.
    federation_allowed_hosts: str = ""
    federation_max_response_bytes: int = 2 * 1024 * 1024
    federation_fetch_seconds: float = Field(default=30.0, gt=0)  # total, per request
    # First delivery retry after this many seconds, doubling each time (tests shorten it).
    federation_delivery_retry_seconds: float = Field(default=60.0, gt=0)
    # "Authorized fetch": GETs of our actors, posts and collections must be signed by a remote
    # actor (401 otherwise); the instance actor, WebFinger and NodeInfo stay open.
    authorized_fetch: bool = False
    # How long an idle job worker waits before it looks for due jobs again.
    worker_idle_seconds: float = Field(default=1.0, gt=0, le=60)
    # Remote media cache (federation.remote_media): largest remote image fetched, and how many
    # days a cached copy is kept before it is pruned (and fetched again when someone looks).
    remote_media_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    remote_media_days: int = Field(default=14, ge=0)  # 0 = keep cached copies forever
    # Remote posts nobody here interacted with are deleted after this many days (0 = never).
    remote_post_days: int = Field(default=30, ge=0)

    @property
    def federation_allowed_host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.federation_allowed_hosts.split(",") if h.strip()]

    @property
    def base_url(self) -> str:
        """Public URL of the instance, without a trailing slash."""
        return f"{'https' if self.https else 'http'}://{self.domain}"

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file under var_dir."""
        return self.database_url or f"sqlite+aiosqlite:///{self.var_dir / 'kith.db'}"

    @property
    def effective_media_dir(self) -> Path:
        return self.media_dir or self.var_dir / "media"

    @property
    def effective_mail_dir(self) -> Path:
        return self.mail_dir or self.var_dir / "mail"

    def effective_secret_key(self) -> str:
        """The configured secret, or one generated once and kept in var/secret_key."""
        if self.secret_key:
            return self.secret_key
        path = self.var_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        self.secret_key = path.read_text().strip()
        return self.secret_key


@lru_cache
def get_settings() -> Settings:
    """Settings of this process (tests build their own `Settings` and pass it to create_app)."""
    return Settings()
