"""App settings: every ``python app.py`` flag, each also readable from an environment variable."""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .args import MAX_NEW_TOKENS_CAP
from .files import parse_yes_no

SHARE_MIN_PASSWORD = 12  # characters; --share with a shorter --auth password is refused


@dataclass
class AppSettings:
    host: str = "127.0.0.1"  # address to listen on (KFT_HOST; 0.0.0.0 in Docker and on a Space)
    port: int = 7860  # port to listen on (KFT_PORT)
    share: bool = False  # create a public gradio share link (KFT_SHARE); needs --auth
    auth: str | None = None  # user:password[,user2:password2] (KFT_AUTH)
    allow_share_without_auth: bool = False  # allow --share without --auth (KFT_ALLOW_SHARE_WITHOUT_AUTH)
    data_dir: str = "data"  # runs, adapters and checkpoints go here (KFT_DATA_DIR; /data on a Space with storage)
    default_model: str | None = None  # KFT_DEFAULT_MODEL; None = Llama 3.1 8B on a GPU, tiny on CPU
    max_steps: int = 10_000  # upper limit on training steps accepted by the server (KFT_MAX_STEPS)
    max_new_tokens: int = 1024  # upper limit on generated tokens per answer (KFT_MAX_NEW_TOKENS)
    read_only: bool = False  # comparison only, no training (KFT_READ_ONLY); for public links
    allowed_models: str | None = None  # KFT_ALLOWED_MODELS (comma-separated); None = any
    max_upload_mb: int = 200  # KFT_MAX_UPLOAD_MB; gradio refuses bigger files before storing
    uploads_keep_mb: int = 2048  # KFT_UPLOADS_KEEP_MB: stored uploads no run points to, oldest removed beyond this
    # KFT_UPLOADS_QUOTA_MB: all uploads on disk (kft's stored ones and Gradio's upload folder); more are refused
    uploads_quota_mb: int = 4096
    lang: str = "ko"  # initial UI language, ko or en (KFT_LANG)
    verbose: bool = False  # also print other libraries' start-up and request lines (KFT_VERBOSE)
    # KFT_TRUSTED_PROXIES: comma-separated addresses or networks of the reverse proxies in front of the app, whose
    # X-Forwarded-For header is believed (the login throttle counts the client it names); None = no proxy is
    # believed, every request counts as the address that opened the connection
    trusted_proxies: str | None = None
    max_sessions: int = 200  # KFT_MAX_SESSIONS: browser tabs and API calls whose gradio session state is kept
    session_idle_s: int = 600  # KFT_SESSION_IDLE_S: a session no event used for this long is dropped (pages tick 2 s)

    def allowed_model_names(self) -> tuple[str, ...] | None:
        names = tuple(n.strip() for n in (self.allowed_models or "").split(",") if n.strip())
        return names or None

    def trusted_proxy_list(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in (self.trusted_proxies or "").split(",") if n.strip())

    def auth_pairs(self) -> list[tuple[str, str]] | None:
        if not self.auth:
            return None
        pairs = []
        for item in self.auth.split(","):
            user, sep, pw = item.strip().partition(":")
            if not sep or not user or not pw:
                raise ValueError("--auth must look like user:password (several separated by commas)")
            pairs.append((user, pw))
        return pairs


def _env_bool(name: str) -> bool | None:
    """A yes/no variable; a word that is neither is refused (KFT_READ_ONLY=y must not mean 'off')."""
    v = os.environ.get(name)
    if v is None or not v.strip():
        return None
    flag = parse_yes_no(v)
    if flag is not None:
        return flag
    raise SystemExit(f"{name}={v!r} is neither yes nor no: use 1/true/yes/on or 0/false/no/off")


def _env_int(names: Sequence[str], default: int) -> int:
    """The first of ``names`` that is set (an empty value counts as unset), as a whole number."""
    for name in names:
        v = os.environ.get(name)
        if v is not None and v.strip():
            try:
                return int(v.strip())
            except ValueError:
                raise SystemExit(f"{name}={v!r} is not a whole number") from None
    return default


def _env_lang(default: str) -> str:
    v = (os.environ.get("KFT_LANG") or "").strip().lower() or default
    if v not in ("ko", "en"):
        raise SystemExit(f"KFT_LANG={os.environ.get('KFT_LANG')!r}: use ko or en")
    return v


def on_space() -> bool:
    """Whether this process runs in a Hugging Face Space (the Space sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def _default_data_dir() -> str:
    """data/ locally; /data/kft on a Space with persistent storage (mounted at /data), so runs outlive restarts."""
    space_data = Path("/data")
    if on_space() and space_data.is_dir() and os.access(space_data, os.W_OK):
        return str(space_data / "kft")
    return AppSettings.data_dir


def _default_host() -> str:
    """127.0.0.1 locally; 0.0.0.0 when gradio's own variable asks for it (a Space sets GRADIO_SERVER_NAME)."""
    return os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space() else AppSettings.host)


def parse_settings(argv: Sequence[str] | None = None) -> AppSettings:
    d = AppSettings()
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python app.py", description="kft: Korean safety LoRA fine-tuning app")
    p.add_argument("--host", default=env("KFT_HOST", _default_host()))
    p.add_argument("--port", type=int, default=_env_int(("KFT_PORT", "GRADIO_SERVER_PORT"), d.port))
    p.add_argument("--share", action="store_true", default=bool(_env_bool("KFT_SHARE")))
    p.add_argument("--auth", default=env("KFT_AUTH"), help="user:password; required with --share")
    p.add_argument("--allow-share-without-auth", action="store_true",
                   default=bool(_env_bool("KFT_ALLOW_SHARE_WITHOUT_AUTH")))
    p.add_argument("--data-dir", default=env("KFT_DATA_DIR", _default_data_dir()))
    p.add_argument("--default-model", default=env("KFT_DEFAULT_MODEL"))
    p.add_argument("--max-steps", type=int, default=_env_int(("KFT_MAX_STEPS",), d.max_steps))
    p.add_argument("--max-new-tokens", type=int, default=_env_int(("KFT_MAX_NEW_TOKENS",), d.max_new_tokens))
    p.add_argument("--read-only", action="store_true", default=bool(_env_bool("KFT_READ_ONLY")))
    p.add_argument("--allowed-models", default=env("KFT_ALLOWED_MODELS"),
                   help="comma-separated models that may be trained or compared (default: any)")
    p.add_argument("--max-upload-mb", type=int, default=_env_int(("KFT_MAX_UPLOAD_MB",), d.max_upload_mb))
    p.add_argument("--uploads-keep-mb", type=int, default=_env_int(("KFT_UPLOADS_KEEP_MB",), d.uploads_keep_mb),
                   help="stored uploads that no run points to are removed, oldest first, beyond this total")
    p.add_argument("--uploads-quota-mb", type=int, default=_env_int(("KFT_UPLOADS_QUOTA_MB",), d.uploads_quota_mb),
                   help="all uploads on disk together (stored ones and gradio's upload folder): more are refused")
    p.add_argument("--lang", choices=("ko", "en"), default=_env_lang(d.lang))
    p.add_argument("--trusted-proxies", default=env("KFT_TRUSTED_PROXIES"),
                   help="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is believed "
                        "(default: none; the login throttle counts the connecting address)")
    p.add_argument("--max-sessions", type=int, default=_env_int(("KFT_MAX_SESSIONS",), d.max_sessions),
                   help="sessions (browser tabs, API calls) whose state is kept; the oldest is dropped beyond this")
    p.add_argument("--session-idle-s", type=int, default=_env_int(("KFT_SESSION_IDLE_S",), d.session_idle_s),
                   help="a session no event has used for this many seconds is dropped (an open page ticks every 2 s)")
    p.add_argument("--verbose", action="store_true", default=bool(_env_bool("KFT_VERBOSE")),
                   help="also print other libraries' lines (bitsandbytes' CPU kernel notice, each httpx request)")
    s = AppSettings(**vars(p.parse_args(argv)))
    s.data_dir = str(Path(s.data_dir).expanduser())
    return s


def check_settings(s: AppSettings) -> None:
    """Refuse unsafe or impossible settings with a message that says why."""
    problems = []
    if s.share and not s.auth and not s.allow_share_without_auth:
        problems.append("--share without --auth is refused: a share link makes every event (training, generation, "
                        "file routes) callable by anyone who gets the link. Add --auth user:password, "
                        "or pass --allow-share-without-auth if you really mean it.")
    if s.max_steps < 1:
        problems.append("--max-steps must be at least 1")
    if not 1 <= s.max_new_tokens <= MAX_NEW_TOKENS_CAP:  # the comparison's own ceiling: more would be cut anyway
        problems.append(f"--max-new-tokens must be between 1 and {MAX_NEW_TOKENS_CAP}, got {s.max_new_tokens}")
    if not 1 <= s.max_upload_mb <= 10_240:
        problems.append("--max-upload-mb must be between 1 and 10240")
    if s.uploads_keep_mb < s.max_upload_mb:
        problems.append(f"--uploads-keep-mb ({s.uploads_keep_mb}) must be at least --max-upload-mb ({s.max_upload_mb})")
    if s.uploads_quota_mb < s.uploads_keep_mb:
        problems.append(f"--uploads-quota-mb ({s.uploads_quota_mb}) must be at least --uploads-keep-mb "
                        f"({s.uploads_keep_mb}): uploads are refused at the quota, before the retention rules apply")
    if not 1 <= s.max_sessions <= 10_000:
        problems.append("--max-sessions must be between 1 and 10000")
    if not 10 <= s.session_idle_s <= 86_400:
        problems.append("--session-idle-s must be between 10 and 86400 (open pages are used every 2 s)")
    for proxy in s.trusted_proxy_list():
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            problems.append(f"--trusted-proxies: {proxy[:80]!r} is not an IP address or network (such as 10.0.0.1 "
                            "or 10.0.0.0/8)")
    allowed = s.allowed_model_names()
    if allowed and s.default_model and s.default_model not in allowed:
        problems.append(f"--default-model {s.default_model!r} is not in --allowed-models {list(allowed)}")
    if s.auth:
        try:
            short = [user for user, pw in s.auth_pairs() or [] if len(pw) < SHARE_MIN_PASSWORD]
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if s.share and short:
                problems.append(f"--share with a password shorter than {SHARE_MIN_PASSWORD} characters is refused "
                                f"(user {', '.join(map(repr, short))}): a share link is public, and a short password "
                                f"can be guessed. Use a password of at least {SHARE_MIN_PASSWORD} characters in --auth.")
    if problems:
        raise SystemExit("kft: " + "\n".join(problems))


def settings_warnings(s: AppSettings) -> list[str]:
    """Risky but allowed settings, logged at launch."""
    warnings = []
    public = s.share or on_space() or s.host not in ("127.0.0.1", "localhost", "::1")
    if public and not s.auth and not s.read_only:
        warnings.append("the app is reachable by others and has no --auth: anyone who reaches it can start "
                        "training runs through the API. Set KFT_AUTH (a Space secret) or KFT_READ_ONLY=1.")
    if public and not s.allowed_model_names() and not s.read_only:
        warnings.append("no --allowed-models: any Hub id or local model directory can be trained from the API. "
                        "Set KFT_ALLOWED_MODELS for a public deployment.")
    if on_space() and s.auth and not s.trusted_proxy_list():
        warnings.append("on a Space every client reaches kft through the Space's proxy, so the login throttle counts "
                        "them all as the proxy's one address: 10 wrong passwords from anyone hold every login back "
                        "for 5 minutes. Set KFT_TRUSTED_PROXIES to the proxy's address (the one kft logs with a "
                        "refused login) to count clients apart (docs/DEPLOY.md).")
    return warnings
