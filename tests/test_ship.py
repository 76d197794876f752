"""Shipping: a public deployment through gradio_client on localhost (auth, file routes, server-side limits,
uploads, one run out of twenty concurrent starts, read-only mode), the settings, the Dockerfile and the
Space front matter. The apps run in this process with the tiny model; nothing here needs a GPU."""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import re
import shlex
import shutil
import uuid
from pathlib import Path

import gradio
import httpx
import pytest
from gradio_client import Client, handle_file

from conftest import ROOT, free_port, running_app
from kft.config.app_settings import AppSettings, check_settings, parse_settings, settings_warnings
from kft.ui import server

AUTH = ("kft", "pw-Ship-123")
FAST = dict(model="tiny", data_kind="sample", max_seq_length=512, learning_rate=1e-2,
            use_gradient_checkpointing="false")
COMPARE = dict(input_="", source="run", run="", hub="", max_new_tokens=16, do_sample=False, temperature=0.7,
               top_p=0.9, repetition_penalty=1.0, lang="en")


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """A deployment as the README's public example: auth, only the tiny model, low limits, 1 MB uploads."""
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path_factory.mktemp("public")), lang="en",
                           auth=f"{AUTH[0]}:{AUTH[1]}", allowed_models="tiny", max_steps=50, max_new_tokens=64,
                           max_upload_mb=1)
    with running_app(settings) as (url, ws):
        client = Client(url, auth=AUTH, verbose=False)
        yield url, ws, client
        client.close()


def _login(url: str) -> httpx.Client:
    session = httpx.Client()
    assert session.post(f"{url}login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
    return session


def _raw_get(url: str, path: str, cookies: httpx.Cookies) -> int:
    """GET with the path sent exactly as written (httpx would normalise ../ away)."""
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    status = conn.getresponse().status
    conn.close()
    return status


class _Nothing:
    """What the deployment holds now (its run, its model, its run directories): ``.started()`` says whether a
    request since changed any of it. Each test compares with its own beginning, whatever ran before it."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.before = self._state()

    def _state(self) -> tuple:
        ws = self.ws
        return id(ws.training.job), id(ws.slot.loaded), sorted(p.name for p in ws.runs_dir.iterdir())

    def started(self) -> bool:
        return self._state() != self.before


# ---- auth -----------------------------------------------------------------------------------------------
def test_unauthenticated_calls_are_refused(public):
    url, ws, client = public
    nothing = _Nothing(ws)
    with pytest.raises(Exception, match="credentials|login|401|Not authenticated"):
        Client(url, verbose=False)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do; the wrong password must not connect
        Client(url, auth=(AUTH[0], "wrong"), verbose=False)
    anon = httpx.Client()
    for method, path in [("GET", "config"), ("GET", "gradio_api/info"), ("POST", "gradio_api/call/start_training"),
                         ("POST", "gradio_api/call/resume_run"), ("POST", "gradio_api/upload"),
                         ("POST", "gradio_api/queue/join"), ("GET", "gradio_api/file=README.md")]:
        response = anon.request(method, url + path, json={"data": ["tiny"], "fn_index": 0, "session_hash": "x"})
        assert response.status_code == 401, (path, response.status_code)
    assert not nothing.started()
    assert "/start_training" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def test_failed_logins_are_throttled_per_client_address(tmp_path):
    """Gradio's login took 200 wrong passwords in 0.4 s; after MAX_FAILURES in the window an address waits."""
    from kft.services.login import MAX_FAILURES, LoginThrottle

    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "d"), lang="en", auth=f"{AUTH[0]}:{AUTH[1]}")
    with running_app(settings) as (url, ws), httpx.Client() as http:
        for _ in range(MAX_FAILURES):
            assert http.post(f"{url}login", data={"username": AUTH[0], "password": "wrong"}).status_code == 400
        for password in ("wrong", AUTH[1]):  # now even the right password waits
            refused = http.post(f"{url}login", data={"username": AUTH[0], "password": password})
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
            assert "Too many failed logins from this address" in refused.json()["detail"]
        assert ws.logins.retry_after("10.0.0.9") == 0  # another address is not held back
    clock = [0.0]
    throttle = LoginThrottle(max_failures=2, window_s=60, clock=lambda: clock[0])
    throttle.failed("a"), throttle.failed("a")
    assert throttle.retry_after("a") == 60
    clock[0] = 60.0  # the window slides past the failures
    assert throttle.retry_after("a") == 0


def test_the_login_throttle_counts_the_socket_peer_not_a_forwarded_header(tmp_path):
    """uvicorn believed X-Forwarded-For from 127.0.0.1: 300 wrong passwords, each with another header, got no 429,
    and the right password with a fresh header passed while loopback was locked out. Only --trusted-proxies are
    believed now; and 60 simultaneous guesses from one address judge at most MAX_FAILURES of them."""
    from kft.services.login import MAX_FAILURES

    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "d"), lang="en", auth=f"{AUTH[0]}:{AUTH[1]}")
    with running_app(settings) as (url, ws), httpx.Client() as http:
        def guess(i: int, password: str = "wrong") -> int:
            return http.post(f"{url}login", data={"username": AUTH[0], "password": password},
                             headers={"X-Forwarded-For": f"10.1.{i // 250}.{i % 250 + 1}"}).status_code

        assert [guess(i) for i in range(MAX_FAILURES)] == [400] * MAX_FAILURES
        assert guess(MAX_FAILURES) == 429 and guess(MAX_FAILURES + 1, AUTH[1]) == 429
        assert ws.logins.retry_after("10.1.0.1") == 0 and ws.logins.retry_after("127.0.0.1") > 0
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "e"), lang="en", auth=f"{AUTH[0]}:{AUTH[1]}")
    with running_app(settings) as (url, ws):
        def one(_: int) -> int:
            return httpx.post(f"{url}login", data={"username": AUTH[0], "password": "wrong"}).status_code

        with concurrent.futures.ThreadPoolExecutor(60) as pool:
            codes = list(pool.map(one, range(60)))
        assert codes.count(400) <= MAX_FAILURES and codes.count(429) >= 60 - MAX_FAILURES, codes
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "f"), lang="en", auth=f"{AUTH[0]}:{AUTH[1]}",
                           trusted_proxies="127.0.0.1")
    with running_app(settings) as (url, ws), httpx.Client() as http:  # behind a named proxy: the client it names
        for _ in range(MAX_FAILURES):
            guess(0)
        assert guess(0) == 429 and guess(1) == 400 and ws.logins.retry_after("127.0.0.1") == 0


def test_trusted_proxies_are_addresses_or_networks():
    assert parse_settings(["--trusted-proxies", "10.0.0.1, 192.168.0.0/16"]).trusted_proxy_list() == (
        "10.0.0.1", "192.168.0.0/16")
    assert AppSettings().trusted_proxy_list() == ()
    with pytest.raises(SystemExit, match="--trusted-proxies: 'proxy.example' is not an IP address or network"):
        check_settings(AppSettings(trusted_proxies="proxy.example"))


def test_share_with_a_short_password_is_refused_at_start():
    with pytest.raises(SystemExit, match="--share with a password shorter than 12 characters is refused"):
        check_settings(AppSettings(share=True, auth="me:short-pw"))
    check_settings(AppSettings(share=True, auth="me:twelve-chars"))
    check_settings(AppSettings(auth="me:short"))  # without a share link the password is the deployer's choice


def test_no_endpoint_takes_a_token(public):
    """The Hub token comes only from the server's environment: no API parameter asks for it."""
    api = public[2].view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = [p.get("parameter_name") or p.get("label") or "" for e in api.values() for p in e["parameters"]]
    assert names and not [n for n in names if re.search(r"(?<!new_)token|password|secret", n.lower())]


# ---- file routes ----------------------------------------------------------------------------------------
def test_file_routes_refuse_traversal_absolute_paths_and_private_folders(public, tmp_path, monkeypatch):
    url, ws, _ = public
    session = _login(url)
    run = ws.runs_dir / "20250101-000000"
    (run / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    for f in (run / "run.json", run / "checkpoints" / "checkpoint-1" / "trainer_state.json", ws.data_dir / "x.txt"):
        f.write_text("{}", encoding="utf-8")
    from huggingface_hub import constants

    from kft.models.tiny import cache_root

    blocked = server.blocked_paths(AppSettings(data_dir=str(ws.data_dir)))
    hub_file = Path(constants.HF_HUB_CACHE) / f".kft-probe-{uuid.uuid4().hex}" / "config.json"
    hub_file.parent.mkdir(parents=True, exist_ok=True)
    hub_file.write_text("{}", encoding="utf-8")
    tiny_file = next(p for p in cache_root().rglob("*") if p.is_file())  # the tiny model's cache
    try:
        _probe_file_routes(url, session, [run / "run.json", run / "checkpoints" / "checkpoint-1" / "trainer_state.json",
                                          ws.data_dir / "x.txt", hub_file, tiny_file, ROOT / "app.py",
                                          Path("/etc/passwd")])
    finally:
        shutil.rmtree(hub_file.parent)
        shutil.rmtree(run)  # later tests check that no run directory appears
    # the data directory's entries (runs, uploads; whatever else lies there), not kft's own gradio upload folder
    for folder in (ws.runs_dir, ws.data_dir / "uploads", ws.data_dir / "x.txt", Path(constants.HF_HUB_CACHE), cache_root()):
        assert str(folder.resolve()) in blocked
    assert str(ws.uploads.scratch) not in blocked


def _probe_file_routes(url: str, session: httpx.Client, targets: list[Path]) -> None:
    upload = session.post(f"{url}gradio_api/upload", files={"files": ("ok.txt", b"hello")}).json()[0]
    gradio_dir = Path(upload).parent.parent  # the gradio cache: what file routes may serve
    assert session.get(f"{url}gradio_api/file={upload}").status_code == 200  # the control: served files work
    up = "../" * (len(gradio_dir.parts) + 2)
    for target in targets:
        for path in (str(target), f"{gradio_dir}/{up}{str(target).lstrip('/')}",
                     f"{gradio_dir}/%2e%2e/%2e%2e/{'%2e%2e/' * len(gradio_dir.parts)}{str(target).lstrip('/')}",
                     f"{up}{str(target).lstrip('/')}", str(target.relative_to(target.anchor))):
            for route in ("/gradio_api/file=", "/file="):
                status = _raw_get(url, route + path, session.cookies)
                assert status in (403, 404), (route + path, status)
    for rel in ("app.py", "README.md", "kft/config/app_settings.py", "data/runs", "runs"):
        assert _raw_get(url, f"/gradio_api/file={rel}", session.cookies) in (403, 404), rel


def test_a_client_cannot_pass_a_server_path_as_an_uploaded_file(public):
    """A raw API call (gradio_client would upload a local file itself) naming a file in the data directory."""
    url, ws, client = public
    nothing = _Nothing(ws)
    (ws.data_dir / "secret.jsonl").write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/start_training"]["parameters"]
    values = {**{p["parameter_name"]: p.get("parameter_default") for p in params}, **FAST, "data_kind": "upload",
              "max_steps": 2, "upload": {"path": str(ws.data_dir / "secret.jsonl"), "meta": {"_type": "gradio.FileData"}}}
    session = _login(url)
    event = session.post(f"{url}gradio_api/call/start_training",
                         json={"data": [values[p["parameter_name"]] for p in params]}).json()["event_id"]
    stream = session.get(f"{url}gradio_api/call/start_training/{event}", timeout=60).text
    assert "event: error" in stream and "Training started" not in stream, stream
    assert not nothing.started() and not list(ws.data_dir.glob("uploads/*secret*"))  # not copied as an upload


# ---- limits checked before any model is loaded -------------------------------------------------------
@pytest.mark.parametrize("changes, expected", [
    (dict(max_steps=10**7), "above this server's limit of 50"),
    (dict(model="meta-llama/Llama-3.1-8B"), "⚠️ Refused: the value sent for Base model"),  # gradio's own check
    (dict(model="/etc"), "is not one of its choices"),
    (dict(length_mode="epochs", num_train_epochs=100), "above this server's limit of 50 steps"),
    (dict(max_seq_length=10**6), "max_seq_length 1000000 is above"),
    (dict(split="y" * 3000), "split is 3,000 characters long"),
])
def test_training_limits_are_refused_before_any_model_load(public, changes, expected):
    url, ws, client = public
    nothing = _Nothing(ws)
    try:
        notice = client.predict(api_name="/start_training", **{**FAST, "max_steps": 2, **changes})
        assert notice.startswith("⚠️ Cannot start"), notice
    except Exception as exc:  # noqa: BLE001 - refused by gradio's own input check
        notice = str(exc)
    assert expected in notice, notice
    assert not nothing.started()


def test_the_workspace_refuses_a_disallowed_model_the_ui_did_not_offer(public):
    """Past gradio's dropdown check (e.g. another front end): the Workspace checks the model itself."""
    from conftest import tiny_config

    url, ws, _ = public
    nothing = _Nothing(ws)
    for name in ("meta-llama/Llama-3.1-8B", "/etc", "x" * 5000):
        cfg = tiny_config(2)
        cfg.model.name = name
        with pytest.raises(ValueError, match="is not allowed here"):
            ws.training.start(cfg)
    assert not nothing.started()


def test_generation_limits_and_disallowed_preview_are_refused_before_any_model_load(public):
    url, ws, client = public
    nothing = _Nothing(ws)
    for instruction, tokens, expected in [("가" * 5000, 16, "the limit is 4,000"), ("안녕", 65, "limit of 64|out of its range \\(1 to 64\\)"),
                                          ("", 16, "instruction is empty")]:
        with pytest.raises(Exception, match=expected):
            client.predict(instruction, **{**COMPARE, "max_new_tokens": tokens}, api_name="/compare")
    with pytest.raises(Exception, match="^⚠️ Refused: the value sent for .* is not one of its choices"):
        client.predict(model="someone/big-model", data_kind="sample", api_name="/preview_data")
    assert not nothing.started()


# ---- uploads ----------------------------------------------------------------------------------------------
def test_uploads_need_an_allowed_type_and_size_and_are_parsed_as_data_only(public, tmp_path):
    url, ws, client = public
    nothing = _Nothing(ws)
    pickled = tmp_path / "rows.pkl"
    pickled.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.")
    with pytest.raises(Exception, match="does not take this file type \\(accepted: .jsonl"):
        client.predict(upload=handle_file(str(pickled)), api_name="/start_training", **{**FAST, "data_kind": "upload"})
    big = tmp_path / "big.jsonl"
    big.write_text('{"instruction": "a", "output": "b"}\n' * 40_000, encoding="utf-8")  # 1.4 MB > 1 MB
    with pytest.raises(Exception, match="413|too large|exceeds|size"):
        client.predict(upload=handle_file(str(big)), api_name="/start_training", **{**FAST, "data_kind": "upload"})
    disguised = tmp_path / "rows.parquet"
    disguised.write_bytes(pickled.read_bytes())  # a pickle named .parquet is read as Parquet, and fails as such
    notice = client.predict(upload=handle_file(str(disguised)), api_name="/start_training",
                            **{**FAST, "data_kind": "upload", "max_steps": 2})
    assert "could not be read as Parquet" in notice
    stored = list((ws.data_dir / "uploads").glob("*")) if (ws.data_dir / "uploads").exists() else []
    assert all(p.suffix in (".jsonl", ".json", ".csv", ".parquet") for p in stored)
    assert not nothing.started()


def test_nothing_in_kft_unpickles_or_runs_remote_code():
    """torch.load only with weights_only=True (tensors and plain containers, no pickled code): the check that a
    checkpoint's optimizer and scheduler open before a resume (kft/runs/integrity.py)."""
    pattern = re.compile(r"pickle\.loads?\(|read_pickle\(|torch\.load\((?![^)\n]*weights_only=True\))|(?<![.\w])eval\(|(?<![.\w])exec\(|trust_remote_code=True"
                         r"|weights_only=False|allow_pickle=True")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "kft").rglob("*.py"))
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []


# ---- one run out of twenty concurrent starts ----------------------------------------------------------
def test_twenty_concurrent_starts_make_exactly_one_run(public):
    url, ws, client = public
    if ws.training.job is not None:
        assert ws.training.job.join(120)
    runs = set(ws.runs_dir.iterdir())
    clients = [Client(url, auth=AUTH, verbose=False) for _ in range(4)]
    jobs = [clients[i % 4].submit(api_name="/start_training", **{**FAST, "max_steps": 40}) for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        notices = list(pool.map(lambda j: j.result(timeout=120), jobs))
    started = [n for n in notices if n.startswith("Training started")]
    assert len(started) == 1, notices
    assert all("already in progress" in n or "being started" in n for n in notices if n not in started), notices
    assert len(set(ws.runs_dir.iterdir()) - runs) == 1
    assert "Stop requested" in client.predict(api_name="/stop_training")
    assert ws.training.job.join(120) and ws.training.job.snapshot().status == "stopped"
    for c in clients:
        c.close()


# ---- read-only mode -------------------------------------------------------------------------------------
def test_read_only_mode_refuses_training_and_the_tab_says_so(tmp_path):
    settings = AppSettings(port=free_port(), data_dir=str(tmp_path / "ro"), lang="en", read_only=True)
    (tmp_path / "ro" / "runs" / "old").mkdir(parents=True)
    (tmp_path / "ro" / "runs" / "old" / "run.json").write_text('{"status": "running", "pid": 0}', encoding="utf-8")
    with running_app(settings) as (url, ws):
        client = Client(url, verbose=False)
        notice = client.predict(api_name="/start_training", **{**FAST, "max_steps": 2})
        assert "read-only" in notice and ws.training.job is None
        assert "read-only" in client.predict("old", "en", api_name="/resume_run") and ws.training.job is None
        assert "read-only" in client.predict("me/kft-lora", True, api_name="/push_to_hub")
        hub = client.predict(model="tiny", data_kind="hub", hub_dataset="HuggingFaceFW/fineweb", api_name="/preview_data")
        assert "read-only" in hub  # no Hub dataset is downloaded to a read-only server's disk
        assert "of 333 rows" in client.predict(model="tiny", data_kind="sample", api_name="/preview_data")
        config = httpx.get(f"{url}config").json()
        texts = {c["props"].get("value") for c in config["components"] if c["type"] == "markdown"}
        assert any(isinstance(v, str) and "Read-only mode (comparison only)" in v for v in texts)
        start = next(c for c in config["components"] if c["props"].get("elem_id") == "kft-start")
        assert start["props"]["interactive"] is False
        assert "/compare" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        upload = httpx.post(f"{url}gradio_api/upload", files={"files": ("rows.jsonl", b'{"instruction": "a"}\n')})
        assert upload.status_code == 403 and "read-only" in upload.json()["detail"]  # nothing reaches the disk
        client.close()
    assert list((tmp_path / "ro" / "runs").iterdir()) == [tmp_path / "ro" / "runs" / "old"]


# ---- settings ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_start_up_prints_only_kfts_own_lines_unless_verbose(tmp_path):
    """Issue 16: start-up printed bitsandbytes' missing CPU kernel warning and every httpx request line."""
    import os
    import subprocess
    import sys

    from conftest import free_port, wait_until

    root, log = Path(__file__).resolve().parents[1], tmp_path / "console.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    env.pop("KFT_VERBOSE", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"),
                                 "--default-model", "tiny"], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "for a public link" in log.read_text() or proc.poll() is not None, 180, what="start-up")
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines and any("kft is running" in line for line in lines), lines
    assert all(" kft." in line for line in lines), "\n".join(lines)
    assert parse_settings(["--verbose"]).verbose and not parse_settings([]).verbose


def test_every_setting_reads_its_environment_variable(monkeypatch, tmp_path):
    env = {"KFT_HOST": "0.0.0.0", "KFT_PORT": "7999", "KFT_SHARE": "1", "KFT_AUTH": "a:long-password", "KFT_DATA_DIR": str(tmp_path),
           "KFT_DEFAULT_MODEL": "tiny", "KFT_MAX_STEPS": "100", "KFT_MAX_NEW_TOKENS": "128", "KFT_READ_ONLY": "yes",
           "KFT_ALLOWED_MODELS": "tiny, unsloth/Meta-Llama-3.1-8B-bnb-4bit", "KFT_MAX_UPLOAD_MB": "5", "KFT_UPLOADS_KEEP_MB": "50",
           "KFT_UPLOADS_QUOTA_MB": "60", "KFT_LANG": "en", "KFT_ALLOW_SHARE_WITHOUT_AUTH": "0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = parse_settings([])
    assert (s.host, s.port, s.share, s.auth, s.data_dir, s.default_model) == ("0.0.0.0", 7999, True, "a:long-password",
                                                                              str(tmp_path), "tiny")
    assert (s.max_steps, s.max_new_tokens, s.read_only, s.max_upload_mb, s.lang) == (100, 128, True, 5, "en")
    assert s.allowed_model_names() == ("tiny", "unsloth/Meta-Llama-3.1-8B-bnb-4bit")
    check_settings(s)
    limits = server.make_workspace(s).limits
    assert (limits.max_steps, limits.read_only, limits.max_upload_bytes) == (100, True, 5 * 1024**2)
    assert limits.uploads_keep_bytes == 50 * 1024**2 and limits.uploads_quota_bytes == 60 * 1024**2
    with pytest.raises(SystemExit, match=r"--uploads-quota-mb \(40\) must be at least --uploads-keep-mb \(50\)"):
        check_settings(parse_settings(["--uploads-quota-mb", "40"]))
    from kft.services import Limits

    assert Limits().uploads_quota_bytes == AppSettings().uploads_quota_mb * 1024**2 == 4096 * 1024**2  # one default
    assert parse_settings(["--port", "8001", "--allowed-models", "tiny"]).port == 8001  # flags win over env


@pytest.mark.parametrize("name,value,message", [
    ("KFT_PORT", "78OO", "KFT_PORT='78OO' is not a whole number"),
    ("KFT_MAX_STEPS", "10k", "KFT_MAX_STEPS='10k' is not a whole number"),
    ("KFT_READ_ONLY", "y", "KFT_READ_ONLY='y' is neither yes nor no"),
    ("KFT_READ_ONLY", "enabled", "KFT_READ_ONLY='enabled' is neither yes nor no"),
    ("KFT_LANG", "jp", "KFT_LANG='jp': use ko or en"),
])
def test_a_wrong_environment_variable_is_named_and_never_read_as_off(monkeypatch, name, value, message):
    """A bad number gave a traceback; KFT_READ_ONLY=y silently left a public server writable."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=re.escape(message)):
        parse_settings([])


def test_empty_and_differently_cased_environment_variables_read_as_meant(monkeypatch):
    for k, v in {"KFT_PORT": "", "KFT_LANG": "EN", "KFT_READ_ONLY": " On "}.items():
        monkeypatch.setenv(k, v)
    s = parse_settings([])
    assert (s.port, s.lang, s.read_only) == (AppSettings().port, "en", True)  # empty = unset (docker env files)


def test_share_without_auth_is_refused_and_risky_settings_are_named(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    with pytest.raises(SystemExit, match="a share link makes every event"):
        check_settings(AppSettings(share=True))
    check_settings(AppSettings(share=True, allow_share_without_auth=True))
    with pytest.raises(SystemExit, match="not in --allowed-models"):
        check_settings(AppSettings(default_model="big/model", allowed_models="tiny"))
    with pytest.raises(SystemExit, match="--max-new-tokens must be between 1 and 1024, got 2000"):
        check_settings(AppSettings(max_new_tokens=2000))  # the comparison could not give more than 1024 anyway
    assert settings_warnings(AppSettings()) == []
    warned = " ".join(settings_warnings(AppSettings(host="0.0.0.0")))
    assert "no --auth" in warned and "KFT_ALLOWED_MODELS" in warned
    assert settings_warnings(AppSettings(host="0.0.0.0", read_only=True)) == []


def test_on_a_space_the_app_listens_on_all_addresses_and_keeps_data_in_persistent_storage(monkeypatch, tmp_path):
    for k in ("KFT_HOST", "KFT_DATA_DIR", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/kft")
    s = parse_settings([])
    assert s.host == "0.0.0.0"
    expected = "/data/kft" if Path("/data").is_dir() and os.access("/data", os.W_OK) else "data"
    assert s.data_dir == expected
    assert "no --auth" in " ".join(settings_warnings(s))
    # behind the Space's proxy the login throttle sees one address unless the proxy is named (issue 23, item 3)
    s = parse_settings(["--auth", "u:pw-Space-123"])
    assert "KFT_TRUSTED_PROXIES" in " ".join(settings_warnings(s))
    s = parse_settings(["--auth", "u:pw-Space-123", "--trusted-proxies", "10.0.0.0/8"])
    assert "KFT_TRUSTED_PROXIES" not in " ".join(settings_warnings(s))


# ---- Dockerfile, .dockerignore, Space front matter ------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_dockerfile_names_files_that_exist_and_matches_the_app_defaults():
    """The image cannot be built here (no Docker engine): check what can be checked without building it."""
    steps = _dockerfile()
    get = lambda word: [rest for w, rest in steps if w == word]  # noqa: E731
    assert "nvidia/cuda:" in get("FROM")[0] and "runtime" in get("FROM")[0]
    ignored = [line.strip("/") for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
               if not line.startswith("#")]
    for args in get("COPY"):
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"COPY names {src}, which is not in the repository"
            assert src.strip("/") not in ignored, f"COPY names {src}, which .dockerignore leaves out"
    assert get("EXPOSE") == [str(AppSettings().port)]
    assert any("useradd" in r and "-u 1000" in r for r in get("RUN")) and get("USER")[-1] in ("1000", "user")
    assert any("requirements-gpu.txt" in r for r in get("RUN"))
    env = " ".join(get("ENV"))
    assert "KFT_HOST=0.0.0.0" in env and "KFT_DATA_DIR=/data" in env
    assert get("VOLUME") and "/data" in get("VOLUME")[0]
    assert get("CMD") and shlex.split(get("CMD")[-1].strip("[]").replace(",", " ")) == ["python", "app.py"]
    for must in (".venv", ".git", "data", "runs"):
        assert must in ignored, must


def test_readme_starts_with_the_space_front_matter():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    meta = dict(line.split(": ", 1) for line in text.split("---\n")[1].strip().splitlines())
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert f"gradio=={meta['sdk_version']}" in (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert meta["app_file"] == "app.py" and (ROOT / meta["app_file"]).is_file()
    assert meta["suggested_hardware"] == "t4-small"
    pins = [line for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").lower().splitlines()
            if line.strip() and not line.startswith("#")]
    assert not [p for p in pins if "unsloth" in p]  # CPU CI installs this file; Unsloth needs CUDA
    assert "## Deploy" in text and "untested here" in text


def test_a_push_error_quoting_the_token_never_shows_any_of_it(tmp_path, monkeypatch):
    """The error text was cut to 300 characters before the token was scrubbed: a token across the cut
    was no longer whole, so its first part stayed in the message."""
    import huggingface_hub

    from kft.runs import export

    secret = "hf_SECRETabcdefghijklmnopqrstuvwxyz0123"
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")

    class FailingApi:
        def __init__(self, token: str) -> None:
            self.token = token

        def create_repo(self, *a, **k):
            raise RuntimeError("x" * 270 + f" token {self.token} refused")  # the cut at 300 falls inside it

    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setattr(huggingface_hub, "HfApi", FailingApi)
    with pytest.raises(export.ExportError) as info:
        export.push_adapter(run, "me/kft-lora")
    assert "Push to me/kft-lora failed" in str(info.value) and secret[:8] not in str(info.value)
