"""The deployment files (deploy/, .dockerignore): what can be checked without Docker, a GPU or systemd
as PID 1. Dockerfiles: every COPY source exists and is not excluded by .dockerignore, every repo script
a RUN calls is copied in first, every base image is pinned, the final stage runs as a non-root user,
exposes 8765, and its HEALTHCHECK works against a live /healthz; its CMD, the systemd ExecStart and
serve.toml name real `edge-xemo serve` options. The unit passes `systemd-analyze verify` and keeps
its hardening (`systemd-analyze security`)."""

from __future__ import annotations

import fnmatch
import http.server
import ipaddress
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
UNIT = REPO / "deploy" / "systemd" / "edge-xemo.service"
SERVE_TOML = REPO / "deploy" / "systemd" / "serve.toml"
PORT = 8765


# ----------------------------------------------------------------------------------- Dockerfiles

def instructions(path: Path) -> list[tuple[str, str, int]]:
    """(INSTRUCTION, arguments, line) with continuation lines joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # a comment inside a continued instruction: Docker drops it
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip(), start))
        buf = ""
    assert not buf, f"{path.name}: the file ends inside a continued instruction"
    return out


def global_args(instrs) -> dict[str, str]:
    """ARGs before the first FROM, with their defaults."""
    args = {}
    for word, rest, _ in instrs:
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def split_flags(rest: str) -> tuple[dict[str, str], list[str]]:
    """`--from=x --chown=y a b c` -> ({'from': 'x', ...}, ['a', 'b', 'c']); JSON arrays too."""
    flags = {}
    words = shlex.split(rest)
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    if words and words[0].startswith("["):
        words = json.loads(" ".join(words))
    return flags, words


def stages(path: Path) -> list[dict]:
    """One dict per FROM: base (ARG defaults applied), name, and its instructions."""
    instrs = instructions(path)
    args = global_args(instrs)
    out = []
    for word, rest, line in instrs:
        if word == "FROM":
            flags, words = split_flags(rest)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            out.append({"base": expand(words[0], args), "name": name, "line": line, "body": []})
        elif out:
            out[-1]["body"].append((word, rest, line))
    return out


def dockerignore() -> list[tuple[bool, re.Pattern]]:
    """The root .dockerignore as (is_exception, regex) in file order (Docker: the last match wins)."""
    path = REPO / ".dockerignore"
    rules = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rx = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                rx += ".*"
                i += 2
                if pattern.startswith("/", i):
                    rx += "/?"
                    i += 1
                continue
            c = pattern[i]
            rx += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
            i += 1
        rules.append((negate, re.compile(rx + "(/.*)?$")))  # a matched folder excludes what is under it
    return rules


def ignored(relpath: str, rules) -> bool:
    state = False
    for negate, rx in rules:
        if rx.match(relpath):
            state = not negate
    return state


def local_copy_sources(stage) -> list[tuple[str, int]]:
    out = []
    for word, rest, line in stage["body"]:
        if word in ("COPY", "ADD"):
            flags, words = split_flags(rest)
            if "from" not in flags:
                out += [(src, line) for src in words[:-1]]
    return out


def final(path: Path) -> dict:
    return stages(path)[-1]


def body_args(stage, word: str) -> list[str]:
    return [rest for w, rest, _ in stage["body"] if w == word]


def test_there_are_three_dockerfiles():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.cuda", "Dockerfile.jetson"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_no_heredocs(path):
    """The checks below parse instructions line by line; a heredoc would hide commands from them."""
    assert not [line for w, rest, line in instructions(path) if w == "RUN" and "<<" in rest]


def run_commands(path: Path) -> list[tuple[str, int]]:
    """Shell-form RUN commands without their leading --mount=/--network= flags."""
    out = []
    for word, rest, line in instructions(path):
        if word == "RUN":
            cmd = re.sub(r"^(--\S+\s+)+", "", rest)
            if not cmd.startswith("["):
                out.append((cmd, line))
    return out


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_run_commands_parse_as_sh_and_their_python_compiles(path):
    """Docker runs RUN with /bin/sh -c (dash on Debian and Ubuntu): `sh -n` catches a broken `case`,
    quote or `&&` chain; each inline `python -c` program must compile."""
    sh = shutil.which("dash") or shutil.which("sh")
    for cmd, line in run_commands(path):
        r = subprocess.run([sh, "-n", "-c", cmd], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, f"{path.name}:{line}: {r.stderr.strip()}"
        words = shlex.split(cmd)
        for i, word in enumerate(words[1:-1], 1):
            if word == "-c" and re.search(r"(^|/)python[\d.]*$", words[i - 1]):
                compile(words[i + 1], f"{path.name}:{line}", "exec")


def test_the_models_stage_is_the_same_in_all_three():
    """The stage that runs scripts/install.sh is one text in the three files, up to that RUN: they
    cannot drift apart, and BuildKit builds it once for all of them on one machine."""
    def models_stage(path):
        stage = next(s for s in stages(path) if s["name"] in ("models", "models-build"))
        body = [(w, rest) for w, rest, _ in stage["body"]]
        end = next(i for i, (w, rest) in enumerate(body) if w == "RUN" and "scripts/install.sh" in rest)
        return stage["base"], body[:end + 1]
    first, *others = [models_stage(p) for p in DOCKERFILES]
    for path, other in zip(DOCKERFILES[1:], others):
        assert other == first, f"{path.name}: its models stage differs from {DOCKERFILES[0].name}'s"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_in_the_context(path):
    rules = dockerignore()
    for stage in stages(path):
        for src, line in local_copy_sources(stage):
            assert not src.startswith(("/", "..")), f"{path.name}:{line}: {src} is outside the build context"
            matches = [p for p in REPO.glob(src)] if any(c in src for c in "*?[") else [REPO / src]
            assert matches and all(p.exists() for p in matches), f"{path.name}:{line}: COPY source {src} does not exist"
            for p in matches:
                rel = p.relative_to(REPO).as_posix()
                assert not ignored(rel, rules), f"{path.name}:{line}: COPY source {rel} is excluded by .dockerignore"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_from_names_a_stage_an_image_or_a_documented_context(path):
    text = path.read_text()
    seen = set()
    for stage in stages(path):
        for word, rest, line in stage["body"]:
            if word in ("COPY", "ADD"):
                flags, _ = split_flags(rest)
                ref = flags.get("from")
                if ref is None or ref in seen:
                    continue
                image = ":" in ref or "/" in ref
                context = f"--build-context {ref}=" in text
                assert image or context, f"{path.name}:{line}: --from={ref} is no earlier stage, image or documented --build-context"
        if stage["name"]:
            seen.add(stage["name"])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_scripts_the_build_runs_exist_and_are_copied_first(path):
    for stage in stages(path):
        copied = []
        for word, rest, line in stage["body"]:
            if word in ("COPY", "ADD"):
                flags, words = split_flags(rest)
                if "from" not in flags:
                    copied += words[:-1]
            if word != "RUN":
                continue
            for script in re.findall(r"(?<![\w/.-])((?:scripts|export|deploy)/[\w./-]+\.(?:sh|py))", rest):
                assert (REPO / script).is_file(), f"{path.name}:{line}: RUN uses {script}, which is not in the repo"
                assert any(script == c or script.startswith(c.rstrip("/") + "/") or c in (".", "./") for c in copied), \
                    f"{path.name}:{line}: RUN uses {script} before any COPY brings it into the stage"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_or_earlier_stages(path):
    names = set()
    for stage in stages(path):
        base = stage["base"]
        assert "$" not in base, f"{path.name}:{stage['line']}: FROM {base}: an ARG without a default"
        if base in names or base == "scratch":
            pass
        else:
            tag = base.rsplit("/", 1)[-1]
            assert "@sha256:" in base or (":" in tag and not tag.endswith(":latest")), \
                f"{path.name}:{stage['line']}: FROM {base} is not pinned to a version"
        if stage["name"]:
            names.add(stage["name"])


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_is_non_root_exposes_8765_and_checks_healthz(path):
    last = final(path)
    users = body_args(last, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{path.name}: the final stage runs as root"
    assert str(PORT) in " ".join(body_args(last, "EXPOSE")).split()
    checks = body_args(last, "HEALTHCHECK")
    assert len(checks) == 1 and "CMD" in checks[0]
    env = " ".join(body_args(last, "ENV"))
    assert f"EDGE_XEMO_HEALTH_URL=http://127.0.0.1:{PORT}/healthz" in env
    assert re.search(r"useradd .*--groups video,audio", " ".join(a for w, a, _ in last["body"] if w == "RUN")), \
        f"{path.name}: the server's user is not in the video and audio groups"


def healthcheck_argv(path: Path) -> list[str]:
    check = body_args(final(path), "HEALTHCHECK")[0]
    return json.loads(check[check.index("CMD") + 3:].strip())


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


def _probe(argv: list[str], url: str) -> int:
    assert argv[0] == "python"
    env = {"EDGE_XEMO_HEALTH_URL": url, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=20).returncode


def test_healthcheck_passes_on_200_and_fails_otherwise():
    """Run each Dockerfile's HEALTHCHECK command against a local server: 200 passes; 503, a wrong
    path and a closed port fail."""
    commands = {json.dumps(healthcheck_argv(p)) for p in DOCKERFILES}
    for handler_status in (200, 503):
        handler = type("H", (_Health,), {"status": handler_status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            for cmd in commands:
                rc = _probe(json.loads(cmd), f"{base}/healthz")
                assert (rc == 0) == (handler_status == 200), f"status {handler_status}: rc {rc}"
                if handler_status == 200:
                    assert _probe(json.loads(cmd), f"{base}/nothing-here") != 0
        finally:
            server.shutdown()
            server.server_close()
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for cmd in commands:
        assert _probe(json.loads(cmd), f"http://127.0.0.1:{closed}/healthz") != 0


def test_package_data_ships_what_the_images_need():
    """The images install edge-xemo from its source as a wheel (not editable, as install.sh does), so
    a file the package reads at run time ships only if pyproject's package-data names it: each
    manifest artifact kept inside the package (no `package`, no `home`), the kiosk's and the timeline
    report's static files.
    A missing one fails the image build at `edge-xemo models verify`, or the kiosk at run time."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["edge_xemo"]
    pkg = REPO / "edge_xemo"
    needed = []
    for sidecar in sorted((pkg / "models").glob("*.json")):
        entry = json.loads(sidecar.read_text())
        if "package" not in entry and not entry.get("home"):
            needed.append(f"models/{entry['file']}")
    for static in (pkg / "serve" / "static", pkg / "eval" / "static"):
        needed += [p.relative_to(pkg).as_posix() for p in sorted(static.rglob("*")) if p.is_file()]
    missing = [rel for rel in needed if not any(fnmatch.fnmatchcase(rel, pat) for pat in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data] edge_xemo = {patterns}: {missing}"


def test_dockerignore_keeps_local_clutter_out():
    rules = dockerignore()
    for rel in (".venv/bin/python", ".git/HEAD", "runs/x/log.txt", "edge_xemo/__pycache__/cli.cpython-311.pyc"):
        assert ignored(rel, rules), rel
    for rel in ("pyproject.toml", "scripts/install.sh", "edge_xemo/models/vecb.onnx", "export/minilm.py"):
        assert not ignored(rel, rules), rel


# ----------------------------------------------------------------------- the serve command itself

def serve_command():
    try:
        import typer
        from edge_xemo.cli import app
    except ImportError as e:
        pytest.skip(f"edge_xemo.cli not importable: {e}")
    commands = getattr(typer.main.get_command(app), "commands", {})
    if "serve" not in commands:
        pytest.skip("serve command not present")
    return commands["serve"]


def long_options(cmd) -> dict[str, object]:
    """{'host': param, 'token-file': param, ...}: the long names without `--`."""
    return {o[2:]: p for p in cmd.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]
            if o.startswith("--")}


def takes_value(param) -> bool:
    return not getattr(param, "is_flag", False) and getattr(param, "param_type_name", "option") == "option"


def check_argv(argv: list[str], options: dict, where: str) -> dict[str, str | None]:
    """Every `--name` in argv is a serve option; options that take a value have one. Returns them."""
    seen, i = {}, 0
    while i < len(argv):
        word = argv[i]
        assert word.startswith("--"), f"{where}: unexpected argument {word!r}"
        name, eq, value = word[2:].partition("=")
        assert name in options, f"{where}: --{name} is not an option of `edge-xemo serve`"
        if takes_value(options[name]) and not eq:
            i += 1
            assert i < len(argv), f"{where}: --{name} needs a value"
            value = argv[i]
        seen[name] = value if (eq or takes_value(options[name])) else None
        i += 1
    return seen


def expected_type(param):
    if getattr(param, "is_flag", False):
        return bool
    ann = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if ann in (int, float, str, bool):
        return ann
    if ann is Path:
        return str
    name = getattr(getattr(param, "type", None), "name", "")
    return {"integer": int, "float": float, "boolean": bool, "text": str, "path": str}.get(name)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_cmd_is_a_valid_serve_command_line(path):
    last = final(path)
    entry = json.loads(body_args(last, "ENTRYPOINT")[-1])
    cmd = json.loads(body_args(last, "CMD")[-1])
    assert entry == ["edge-xemo"] and cmd[0] == "serve"
    seen = check_argv(cmd[1:], long_options(serve_command()), f"{path.name} CMD")
    host = seen.get("host", "127.0.0.1")
    assert host == "0.0.0.0" and "no-auth" not in seen, "in a container the server must listen beyond loopback, with tokens"
    assert seen.get("token-file", "").startswith("/var/lib/edge-xemo/"), "the token file must be in the state volume"
    assert any("/var/lib/edge-xemo" in v for v in body_args(last, "VOLUME"))


# ----------------------------------------------------------------------------------------- systemd

def unit() -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values]}} (systemd keys repeat: DeviceAllow=, Environment=)."""
    out, section = {}, None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def environment(svc) -> dict[str, str]:
    env = {}
    for value in svc.get("Environment", []):
        for item in shlex.split(value):
            k, _, v = item.partition("=")
            env[k] = v
    return env


def exec_start() -> list[str]:
    values = unit()["Service"]["ExecStart"]
    assert len(values) == 1
    return shlex.split(values[0])


def test_unit_runs_serve_hardened_as_its_own_user():
    u = unit()
    svc = u["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["User"] == "edge-xemo" and one.get("DynamicUser", "no") == "no"
    assert set(one["SupplementaryGroups"].split()) >= {"video", "audio"}
    assert one["Restart"] == "on-failure"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "StateDirectory": "edge-xemo", "DevicePolicy": "closed"}.items():
        assert one.get(key) == value, f"{key}={one.get(key)}, expected {value}"
    state = "/var/lib/" + one["StateDirectory"]
    assert state in svc["ReadWritePaths"][-1].split()
    assert "PrivateDevices" not in svc or one["PrivateDevices"] == "no", "PrivateDevices= would hide /dev/video*"
    allowed = {v.split()[0] for v in svc.get("DeviceAllow", [])}
    assert {"char-video4linux", "char-alsa"} <= allowed
    assert environment(svc)["EDGE_XEMO_HOME"].startswith(state + "/")
    if "IPAddressDeny" in svc:  # a deny list must leave loopback, where the default config listens
        assert any(a in ("localhost", "127.0.0.1", "127.0.0.0/8", "::1") for v in svc.get("IPAddressAllow", [])
                   for a in v.split())
    assert u["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_exec_start_names_real_serve_options():
    argv = exec_start()
    assert argv[0].startswith("/") and argv[0].endswith("/bin/edge-xemo") and argv[1] == "serve"
    seen = check_argv(argv[2:], long_options(serve_command()), "ExecStart")
    assert seen.get("config") == "/etc/edge-xemo/serve.toml"
    assert unit()["Unit"].get("ConditionPathExists") == ["/etc/edge-xemo/serve.toml"]


@pytest.fixture
def unit_with_fake_binary(tmp_path):
    """The unit with ExecStart's binary replaced by an executable script in tmp_path: `verify` checks
    that the program exists, and /opt/edge-xemo/.venv is not installed here."""
    fake = tmp_path / "edge-xemo"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    original = exec_start()[0]
    text = UNIT.read_text()
    assert text.count(f"ExecStart={original} ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={original} ", f"ExecStart={fake} "))
    return copy


def systemd_analyze():
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd provides it)")
    return exe


def test_unit_verifies(unit_with_fake_binary):
    """rc 0 and no warning about the unit (an unknown or misplaced key only warns, rc stays 0)."""
    r = subprocess.run([systemd_analyze(), "verify", str(unit_with_fake_binary)], capture_output=True, text=True,
                       timeout=30)
    about_unit = [line for line in (r.stdout + r.stderr).splitlines() if UNIT.name in line]
    assert r.returncode == 0 and not about_unit, r.stdout + r.stderr


def test_unit_exposure_stays_low(unit_with_fake_binary):
    """systemd-analyze security's exposure (0 best, 10 worst) is 1.5 for this unit; 2.5 is the limit."""
    exe = systemd_analyze()
    r = subprocess.run([exe, "security", "--offline=yes", "--threshold=25", str(unit_with_fake_binary)],
                       capture_output=True, text=True, timeout=30)
    if "--offline" in r.stderr or "unrecognized option" in r.stderr:
        pytest.skip(f"this systemd-analyze has no offline security check: {r.stderr.strip()[:120]}")
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    assert r.returncode == 0 and level, r.stdout[-2000:] + r.stderr
    assert float(level.group(1)) <= 2.5


# --------------------------------------------------------------------------------------- serve.toml

def test_serve_toml_keys_are_serve_options_with_the_right_types():
    config = tomllib.loads(SERVE_TOML.read_text())
    options = long_options(serve_command())
    unknown = sorted(set(config) - set(options))
    assert not unknown, f"serve.toml keys that are not `edge-xemo serve` options: {unknown}"
    for key, value in config.items():
        want = expected_type(options[key])
        if want is float:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), key
        elif want is not None:
            assert type(value) is want, f"{key} = {value!r}: expected {want.__name__}"


def test_serve_toml_fits_the_unit():
    """The token file lies in the state dir (the only writable path); a listen address beyond loopback
    needs the unit's IP allow list to let clients in."""
    config = tomllib.loads(SERVE_TOML.read_text())
    svc = unit()["Service"]
    state = "/var/lib/" + svc["StateDirectory"][-1]
    assert config["token-file"].startswith(state + "/")
    host = config.get("host", "127.0.0.1")
    loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    if not loopback and "IPAddressDeny" in svc:
        assert any(a not in ("localhost", "127.0.0.1", "::1") for v in svc["IPAddressAllow"] for a in v.split())


def test_serve_toml_is_accepted_by_the_real_config_loader():
    """`edge-xemo serve --config deploy/systemd/serve.toml --help`: the loader rejects unknown keys
    (exit 2) before --help prints."""
    serve_command()
    from typer.testing import CliRunner
    from edge_xemo.cli import app

    r = CliRunner().invoke(app, ["serve", "--config", str(SERVE_TOML), "--help"])
    assert r.exit_code == 0, r.output
