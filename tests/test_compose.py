"""The production Docker setup, proven without a Docker engine.

No Docker engine runs on our machines, so ``docker-compose.yml`` is checked two ways:

1. The Compose tool itself validates it: ``docker-compose config`` (Debian's
   ``docker-compose`` package runs it without an engine) or ``docker compose config``,
   on a copy of the file with ``.env`` made from ``.env.example``.
2. Every app service's ``command`` and environment (``.env.example`` as the ``.env``,
   then the service's ``environment``, then the image's ``ENV``) is run as local
   processes against a local redis-server started with the ``redis`` service's own
   flags, the ``worker`` service scaled to 2, and a 64-image job must complete with
   both workers taking part. The services' healthcheck commands are run too.

Only what cannot exist outside a container is rewritten: ``redis://redis:6379`` to the
local Redis, ``0.0.0.0`` to ``127.0.0.1``, port 8000 to a free port, ``/app`` to the
checkout. The test's own additions (worker concurrency 1, fast heartbeats, small
chunks so that a 64-image job is spread over both workers) are listed in
``TEST_OVERRIDES``.

The same module checks the rest of the image recipe: ``.env.example`` documents every
setting with its real default, ``requirements.lock`` pins every runtime dependency
within pyproject's ranges, and ``.dockerignore`` lets through what the Dockerfile copies.
Regenerate the lock from the virtual environment with
``.venv/bin/python -m tests.test_compose > requirements.lock``.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import httpx
import pytest
import redis

from inkq.embedded_redis import free_port, redis_server_binary
from inkq.procs import popen_child, python_module, stop_all
from inkq.settings import Settings, table
from tests.conftest import ROOT, data_url, require, wait_until

try:
    import yaml
except ImportError:  # pragma: no cover - PyYAML is in the test extras
    yaml = None

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = ROOT / "requirements.lock"
#: What the image's /app/artifacts holds: the checkout's artifacts folder.
ARTIFACTS = ROOT / "artifacts"

#: The compose network's Redis, as the app services are configured to reach it.
COMPOSE_REDIS = "redis://redis:6379"
#: What the test adds on top of the compose configuration (and why).
TEST_OVERRIDES = {
    "INKQ_WORKER_CONCURRENCY": "1",  # two worker processes with one pool child each
    "INKQ_HEARTBEAT_S": "0.5",       # ready sooner
    "INKQ_CHUNK_SIZE": "8",          # 64 images -> 8 chunks, enough for both workers
}
JOB_IMAGES = 64
#: Settings whose documented value in .env.example is the compose/image value, not the code default.
DOCUMENTED_AS_DEPLOYED = {
    "REDIS_URL": "redis://redis:6379/0",
    "INKQ_MODEL_PATH": "/app/artifacts/emnist_model.joblib",
}
#: Packages that must never be in the runtime lock.
NOT_RUNTIME = {"pytest", "pytest-timeout", "pluggy", "iniconfig", "pyyaml", "playwright", "hypothesis"}


# --------------------------------------------------------------------------- helpers


def need_yaml() -> None:
    require(yaml is not None, "PyYAML is not installed (pip install -e '.[test]')")


def compose_file() -> dict:
    need_yaml()
    return yaml.safe_load(COMPOSE.read_text())


def compose_tools() -> list[list[str]]:
    """Every Compose CLI that works here: ``docker compose`` (v2) and/or ``docker-compose``."""
    tools = []
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        tools.append([docker, "compose"])
    if shutil.which("docker-compose"):
        tools.append([shutil.which("docker-compose")])
    return tools


def parse_env_file(text: str) -> dict[str, str]:
    """Active ``VAR=value`` lines, as Compose reads an ``env_file``."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip()
    return env


def documented_env(text: str) -> dict[str, tuple[str, bool]]:
    """Every ``VAR=value`` line of .env.example, commented out or not: name -> (value, active)."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m and not found.get(m.group(2), ("", False))[1]:  # an active line wins
            found[m.group(2)] = (m.group(3).strip(), m.group(1) is None)
    return found


def service_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            current = stages.setdefault(m.group(1) or f"stage{len(stages)}", [])
        current.append(line)
    return stages


def stage_chain(name: str) -> list[str]:
    """The instructions in effect for a stage: its parents' first (``FROM <stage>``)."""
    stages = dockerfile_stages()
    parent = stages[name][0].split()[1]
    return (stage_chain(parent) if parent in stages else []) + stages[name]


def image_env(stage: str) -> dict[str, str]:
    env = {}
    for instr in stage_chain(stage):
        if instr.upper().startswith("ENV "):
            for item in shlex.split(instr[4:]):
                name, value = item.split("=", 1)
                env[name] = value
    return env


def build_target(service: dict) -> str:
    build = service.get("build") or {}
    return build.get("target") if isinstance(build, dict) else None


def localize_command(argv: list[str], port: int) -> list[str]:
    """A container command as a local one: this Python, loopback, a free port."""
    out = []
    for i, arg in enumerate(argv):
        if arg == "0.0.0.0":
            arg = "127.0.0.1"
        elif i > 0 and argv[i - 1] == "--port":
            arg = str(port)
        out.append(arg)
    assert out[0] == "inkq", f"app services run the inkq command, not {argv}"
    return python_module("inkq.cli", *out[1:])


def clean_environ() -> dict[str, str]:
    """This process's environment without any inkq setting that could leak into children."""
    return {k: v for k, v in os.environ.items() if not (k.startswith("INKQ_") or k == "REDIS_URL")}


# --------------------------------------------------------------------------- the tool


def test_compose_config_validates_with_the_compose_tool(tmp_path):
    """``docker compose config`` / ``docker-compose config`` accept the file, every profile on."""
    need_yaml()
    tools = compose_tools()
    require(bool(tools), "no Compose CLI: install Debian's docker-compose "
                         "(apt-get install -y docker-compose) or the docker compose plugin")
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")  # what the README says to do first
    env = {k: v for k, v in clean_environ().items() if not k.startswith("COMPOSE_")}
    for tool in tools:
        run = subprocess.run([*tool, "--profile", "monitoring", "config"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"{' '.join(tool)} config failed:\n{run.stderr}"
        resolved = yaml.safe_load(run.stdout)["services"]
        assert set(resolved) == {"redis", "api", "worker", "predictor", "notifier", "flower"}
        # env_file and environment merged as the containers will see them.
        for name in ("api", "worker"):
            env_seen = service_environment(resolved[name])
            assert env_seen["REDIS_URL"] == f"{COMPOSE_REDIS}/0"
            assert env_seen["INKQ_REQUIRE_API_KEY"] == "true", "API keys are on in the compose example"


# --------------------------------------------------------------------------- the file's shape


def test_compose_file_follows_the_production_checklist():
    services = compose_file()["services"]
    redis_svc, api, worker, flower = (services[n] for n in ("redis", "api", "worker", "flower"))

    # Redis: AOF, never evict, persisted, a real healthcheck.
    flags = shlex.split(redis_svc["command"])
    assert flags[0] == "redis-server"
    assert flags[flags.index("--appendonly") + 1] == "yes"
    assert flags[flags.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in redis_svc["volumes"])
    assert "redis-cli ping" in " ".join(redis_svc["healthcheck"]["test"])

    # One image for api and worker, another command each.
    assert api["build"] == worker["build"] and api["image"] == worker["image"]
    assert build_target(api) == "app"
    assert shlex.split(api["command"]) == ["inkq", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert shlex.split(worker["command"])[:2] == ["inkq", "worker"]
    assert api["ports"] == ["8000:8000"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"]) or "/readyz" in " ".join(api["healthcheck"]["test"])

    # `docker compose up --scale worker=N` needs workers without a fixed name or host port.
    assert "container_name" not in worker and "ports" not in worker
    for svc in (api, worker, flower):
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    for svc in (api, worker):
        assert svc["env_file"] == ".env"
        assert service_environment(svc)["REDIS_URL"] == f"{COMPOSE_REDIS}/0"

    # Flower only on demand, from an image that really has it.
    assert flower["profiles"] == ["monitoring"]
    assert shlex.split(flower["command"]) == ["celery", f"--broker={COMPOSE_REDIS}/0", "flower"]
    assert any(str(p).endswith("5555:5555") for p in flower["ports"])
    assert any(re.search(r"pip install .*flower==", i) for i in stage_chain(build_target(flower)))


def test_dockerfile_builds_a_non_root_pinned_image_with_the_model():
    app = stage_chain("app")
    text = "\n".join(app)
    assert app[0].split()[1].startswith(("python:3.11-slim", "${PYTHON_IMAGE}"))
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE.read_text())
    assert re.search(r"pip install .*-r requirements\.lock", text)
    assert re.search(r"pip install --no-deps ", text)
    users = [i.split()[1] for i in app if i.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "EXPOSE 8000" in app
    assert app[-1] == 'CMD ["inkq", "api", "--host", "0.0.0.0", "--port", "8000"]'
    env = image_env("app")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    # INKQ_MODEL_PATH names the artifact the image copies in (and its card goes with it).
    workdir = [i.split()[1] for i in app if i.upper().startswith("WORKDIR ")][-1]
    copied = [i for i in app if i.upper().startswith("COPY ") and "--from" not in i]
    model = Path(env["INKQ_MODEL_PATH"])
    assert any(f"artifacts/{model.name}" in c and f"artifacts/{model.with_suffix('.json').name}" in c
               for c in copied)
    assert model.parent == Path(workdir) / "artifacts"
    assert model.name == Settings().model_path.name


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if any(fnmatch.fnmatch(c, pat) or (pat.startswith("**/") and
               fnmatch.fnmatch(c.rsplit("/", 1)[-1], pat[3:])) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_dockerfile_copies_and_nothing_private():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    sources = []
    for stage in dockerfile_stages().values():
        for instr in stage:
            if instr.upper().startswith("COPY ") and "--from" not in instr:
                args = [a for a in shlex.split(instr)[1:] if not a.startswith("--")]
                sources += args[:-1]
    for src in sources:
        path = ROOT / src
        assert path.exists(), f"the Dockerfile copies {src}, which is not in the checkout"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or rel.endswith((".pyc", ".so")) or ".egg-info" in rel:
                continue  # local build products: the image builds its own
            assert not dockerignore_excludes(rel, patterns), f".dockerignore drops {rel}"
    for private in (".env", ".venv/bin/python", ".git/config", ".inkq/redis/appendonly.aof",
                    "tests/conftest.py", "bench/results/run.json", "inkq/__pycache__/cli.cpython-311.pyc",
                    "worker/_fastpng.cpython-311-x86_64-linux-gnu.so"):
        assert dockerignore_excludes(private, patterns), f".dockerignore lets {private} through"


# --------------------------------------------------------------------------- .env.example


def test_env_example_documents_every_setting_with_its_default():
    documented = documented_env(ENV_EXAMPLE.read_text())
    missing = [f.metadata["env"] for f in fields(Settings) if f.metadata["env"] not in documented]
    assert not missing, f".env.example does not document {missing} (see `inkq config`)"
    for extra in ("INKQ_REQUIRE_API_KEY", "INKQ_API_HOST", "INKQ_API_PORT"):
        assert extra in documented, extra
    # A commented-out line shows the default: it must be the code's.
    for env, default, _doc in table():
        value, active = documented[env]
        if active:
            continue
        want = DOCUMENTED_AS_DEPLOYED.get(env, default)
        assert value.lower() == want.lower(), f".env.example shows {env}={value}, the default is {want!r}"
    # Keys are on in the compose example; the rest stays at the defaults.
    assert documented["INKQ_REQUIRE_API_KEY"] == ("true", True)
    assert image_env("app")["INKQ_MODEL_PATH"] == DOCUMENTED_AS_DEPLOYED["INKQ_MODEL_PATH"]
    # Active lines must parse as settings (a typo would crash every container at start).
    Settings.from_env(parse_env_file(ENV_EXAMPLE.read_text()))


# --------------------------------------------------------------------------- requirements.lock


def runtime_requirements() -> dict[str, str]:
    """The installed dependency closure of the inkq distribution: name -> version."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, tuple[str, str]] = {}

    def walk(name: str, extras: tuple[str, ...] = ()) -> None:
        dist = distribution(name)
        seen.setdefault(canonicalize_name(name), (dist.metadata["Name"], dist.version))
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None and not any(
                    req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                continue
            if canonicalize_name(req.name) not in seen or req.extras:
                try:
                    walk(req.name, tuple(req.extras))
                except PackageNotFoundError:
                    raise RuntimeError(f"{req.name} ({raw}, needed by {name}) is not installed") from None

    walk("inkq")
    seen.pop("inkq")
    return {n: v for n, v in sorted(seen.values(), key=lambda nv: nv[0].lower())}


def read_lock() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_requirements_lock_pins_every_runtime_dependency():
    from importlib.metadata import distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = read_lock()
    for raw in distribution("inkq").requires or []:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # test extras
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements.lock lacks {req.name} (pyproject: {raw})"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, pyproject wants {req.specifier}"
    assert not NOT_RUNTIME & set(pins), f"test tools in the runtime lock: {NOT_RUNTIME & set(pins)}"
    # The model pickle loads only under the scikit-learn it was trained with.
    card = Settings().card_path
    if card.exists():
        import json

        want = json.loads(card.read_text()).get("versions", {}).get("scikit-learn")
        assert pins["scikit-learn"] == want, f"the model card wants scikit-learn {want}"


def third_party_imports() -> dict[str, set[str]]:
    """Top-level modules the service's packages import that are neither stdlib nor ours."""
    import ast

    found: dict[str, set[str]] = {}
    for package in ("inkq", "api", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("inkq", "api", "worker"):
                        found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_requirements_lock_covers_every_third_party_import():
    """An import the image cannot satisfy would crash a container that the venv runs fine."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    pins = read_lock()
    provided_by = packages_distributions()
    for module, files in sorted(third_party_imports().items()):
        dists = provided_by.get(module)
        assert dists, f"{module} (imported by {sorted(files)}) is not installed"
        assert any(canonicalize_name(d) in pins for d in dists), \
            f"{module} (imported by {sorted(files)}) is not in requirements.lock nor, probably, pyproject"


# --------------------------------------------------------------------------- running it


def compose_redis_command(service: dict, port: int, data_dir: Path) -> list[str]:
    """The redis service's own flags on a local redis-server, on loopback."""
    argv = shlex.split(service["command"])
    assert argv[0] == "redis-server"
    flags = argv[1:]
    for local in ("--port", "--bind", "--dir", "--daemonize", "--logfile"):
        assert local not in flags, f"the compose redis command sets {local}: the test would override it"
    return [redis_server_binary(), *flags, "--bind", "127.0.0.1", "--port", str(port),
            "--protected-mode", "yes", "--dir", str(data_dir), "--daemonize", "no",
            "--logfile", "redis.log"]


def healthcheck_argv(check: dict, replace: dict[str, str], programs: dict[str, str] | None = None) -> list[str]:
    """A service's healthcheck ``test`` as a local command: substrings replaced, programs swapped."""
    test = check["test"]
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    kind, rest = test[0], list(test[1:])
    if kind == "CMD-SHELL":
        rest = ["sh", "-c", rest[0]]
    else:
        assert kind == "CMD", test
        rest[0] = (programs or {}).get(rest[0], rest[0])
    for old, new in replace.items():
        rest = [arg.replace(old, new) for arg in rest]
    return rest


def process_tree(pid: int) -> list:
    """The process and all its descendants (gunicorn workers, Celery pool children)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def still_running(processes: list) -> list:
    """Those still alive (``is_running`` also guards against a reused pid)."""
    import psutil

    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.timeout(180)
def test_compose_services_run_as_local_processes_with_two_workers(tmp_path, canvas_pngs):
    """docker-compose.yml's redis, api and worker x2, as local processes: a job completes."""
    services = compose_file()["services"]
    model = ARTIFACTS / Path(image_env("app")["INKQ_MODEL_PATH"]).name
    require(model.exists(), f"model artifact {model} not found")
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen] = {}
    started: list = []  # psutil.Process of everything the test started, to check none is left

    def start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "ab")
        proc = popen_child(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        out.close()
        procs[name] = proc
        started.extend(process_tree(proc.pid))
        return proc

    def log(name: str) -> str:
        path = logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dump() -> str:
        return "\n".join(f"--- {n} (exit {p.poll()}):\n{log(n)[-3000:]}" for n, p in procs.items())

    # Redis, with the compose service's flags.
    redis_port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    start("redis", compose_redis_command(services["redis"], redis_port, redis_dir), clean_environ())
    local_redis = f"redis://127.0.0.1:{redis_port}"
    r = redis.Redis(port=redis_port, socket_timeout=2, decode_responses=True)
    try:
        wait_until(lambda: _ping(r) or procs["redis"].poll() is not None, 15, "redis-server")
        assert procs["redis"].poll() is None, (redis_dir / "redis.log").read_text()
        assert r.config_get("appendonly")["appendonly"] == "yes"
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        redis_cli = Path(redis_server_binary()).with_name("redis-cli")
        if redis_cli.exists():
            check = healthcheck_argv(services["redis"]["healthcheck"],
                                     {"redis-cli ": f"{redis_cli} -p {redis_port} "})
            assert subprocess.run(check, timeout=10).returncode == 0, check

        # The app services' environment: .env (from .env.example), then `environment`,
        # over the image's ENV; localised; plus the test's overrides.
        dotenv = parse_env_file(ENV_EXAMPLE.read_text())
        api_port = free_port()

        def app_env(service: dict) -> dict[str, str]:
            env = {**image_env(build_target(service)), **dotenv, **service_environment(service)}
            assert env["REDIS_URL"].startswith(COMPOSE_REDIS + "/"), env["REDIS_URL"]
            env["REDIS_URL"] = env["REDIS_URL"].replace(COMPOSE_REDIS, local_redis)
            for k, v in env.items():
                if v.startswith("/app/artifacts/"):
                    env[k] = str(ARTIFACTS / v[len("/app/artifacts/"):])
                elif v.startswith("/app"):
                    env[k] = str(tmp_path / v.lstrip("/"))
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            return {**clean_environ(), **env, **TEST_OVERRIDES}

        api_svc, worker_svc = services["api"], services["worker"]
        api_env = app_env(api_svc)
        assert Path(api_env["INKQ_MODEL_PATH"]).exists(), api_env["INKQ_MODEL_PATH"]
        start("api", localize_command(shlex.split(api_svc["command"]), api_port), api_env)
        for i in (1, 2):  # docker compose up --scale worker=2
            start(f"worker-{i}", localize_command(shlex.split(worker_svc["command"]), 0), app_env(worker_svc))

        url = f"http://127.0.0.1:{api_port}"

        def up() -> bool:
            if any(p.poll() is not None for p in procs.values()):
                raise AssertionError("a service exited:\n" + dump())
            try:
                ok = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
            return ok and r.zcard("inkq:workers") >= 2

        wait_until(up, 90, "the api and both workers")
        worker_ids = set(r.zrange("inkq:workers", 0, -1))
        assert len(worker_ids) == 2, worker_ids

        # The api service's own healthcheck command, pointed at the local port.
        check = healthcheck_argv(api_svc["healthcheck"], {":8000/": f":{api_port}/"}, {"python": sys.executable})
        assert subprocess.run(check, timeout=15).returncode == 0, check

        headers = {}
        if api_env.get("INKQ_REQUIRE_API_KEY", "").lower() == "true" and _has_keys_command():
            # As the README says: `docker compose exec api inkq keys add NAME`.
            made = subprocess.run(python_module("inkq.cli", "keys", "add", "compose-test"), env=api_env,
                                  capture_output=True, text=True, timeout=60, cwd=tmp_path)
            assert made.returncode == 0, made.stderr
            headers = {"Authorization": f"Bearer {made.stdout.strip().split()[-1]}"}
            if "INKQ_REQUIRE_API_KEY" in {f.metadata["env"] for f in fields(Settings)}:
                assert httpx.post(f"{url}/v1/jobs", json={"images": []}, timeout=10).status_code == 401

        pngs = [png for png, _ in canvas_pngs[:JOB_IMAGES]]
        assert len(pngs) == JOB_IMAGES
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            resp = client.post("/v1/jobs", json={"images": [data_url(p) for p in pngs]})
            assert resp.status_code == 202, resp.text
            job_id = resp.json()["id"]

            def finished():
                doc = client.get(f"/v1/jobs/{job_id}").json()
                return doc if doc["status"] not in ("queued", "running") else None

            doc = wait_until(finished, 60, f"job {job_id}", interval_s=0.25)
            assert doc["status"] == "succeeded", (doc, dump())
            assert (doc["total"], doc["done"], doc["failed"]) == (JOB_IMAGES, JOB_IMAGES, 0)
            items, next_url = [], f"/v1/jobs/{job_id}/results?limit=100"
            while next_url:
                page = client.get(next_url).json()
                items += page["items"]
                next_url = page["next"]
        assert [it["index"] for it in items] == list(range(JOB_IMAGES))
        assert all(it.get("prediction") and len(it["top5"]) == 5 for it in items), items[:3]

        # Both workers took part: each logged chunks of this job, together every image once.
        chunk_re = re.compile(rf"job {re.escape(job_id)} chunk (\d+)-(\d+): (\d+) items recorded")
        recorded = {}
        for i in (1, 2):
            chunks = chunk_re.findall(log(f"worker-{i}"))
            assert chunks, f"worker-{i} processed no chunk of the job:\n{dump()}"
            recorded[i] = sum(int(n) for _, _, n in chunks)
        assert sum(recorded.values()) == JOB_IMAGES, recorded
        summary = (f"job {job_id}: {doc['status']}, items per worker {recorded}, workers "
                   f"{sorted(worker_ids)}, api key {'used' if headers else 'not required'}")

        for p in procs.values():
            started.extend(process_tree(p.pid))
    finally:
        stop_all([p for n, p in procs.items() if n != "redis"])  # the app first, then its Redis
        if "redis" in procs:
            stop_all([procs["redis"]])
    left = still_running(started)
    assert not left, f"left running: {[(p.pid, p.cmdline()) for p in left]}"
    print(f"{summary}; {len(set(p.pid for p in started))} processes started and stopped")


def _ping(r: redis.Redis) -> bool:
    try:
        return r.ping()
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False


def _has_keys_command() -> bool:
    from inkq.cli import cli

    return "keys" in cli.commands


if __name__ == "__main__":  # python -m tests.test_compose > requirements.lock
    header = LOCK.read_text().split("\n")
    print("\n".join(line for line in header if line.startswith("#")))
    for name, version in runtime_requirements().items():
        if name.lower() != "setuptools":
            print(f"{name}=={version}")
