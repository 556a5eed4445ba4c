"""The deploy recipe as far as it can be checked without containers or a GPU: the compose file parses and pins
every image, every file it mounts is in the repository, vLLM is started with flags vLLM documents, the router
config it mounts loads, Prometheus scrapes every replica's metrics path and Grafana is provisioned with that
Prometheus and the dashboard that exists, the pieces name each other consistently, and LangGraph's CLI accepts the
Agent Server config. None of this runs a container or pulls an image."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from coe_router import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOC = ROOT / "docs" / "DEPLOY.md"

# Public images the compose file may name: each tag is a published one (docs/DEPLOY.md, "Images"; none is pulled
# by the tests). Images built from this repository are listed apart.
PUBLIC_IMAGES = {
    "nginx:1.27-alpine",
    "postgres:16.4",
    "chromadb/chroma:1.5.9",
    "vllm/vllm-openai:v0.11.0",
    "redis:7.4",
    "prom/prometheus:v2.53.0",
    "grafana/grafana:11.1.0",
}
BUILT_HERE = {
    "coe-router:0.1.0": "deploy/Dockerfile",
    "coe-agent-server:0.1.0": "deploy/langgraph.json",
}

# `vllm serve` flags the recipe uses, each documented by vLLM (docs/DEPLOY.md, "vLLM flags", says where): engine
# arguments (vllm/engine/arg_utils.py) and the OpenAI server's own (vllm/entrypoints/openai/cli_args.py).
DOCUMENTED_VLLM_FLAGS = {
    "--served-model-name", "--host", "--port", "--api-key", "--max-model-len", "--gpu-memory-utilization",
    "--enable-lora", "--lora-modules", "--max-loras", "--max-lora-rank", "--max-cpu-loras",
}
VLLM_LORA_RANKS = {1, 8, 16, 32, 64, 128, 256, 320, 512}  # LoRAConfig.max_lora_rank's allowed values


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture
def router(monkeypatch):
    monkeypatch.setenv("COE_POSTGRES_DSN", "postgresql://coe:coe@postgres:5432/coe")
    monkeypatch.setenv("VLLM_API_KEY", "change-me")
    return load_config(DEPLOY / "router.yaml")


def _vllm_args(compose: dict) -> list[str]:
    service = compose["services"]["vllm"]
    assert service["entrypoint"] == ["vllm", "serve"]
    return [str(a) for a in service["command"]]


def _flag_values(args: list[str]) -> dict[str, list[str]]:
    """flag -> the values after it (up to the next flag); the model is the first positional."""
    values: dict[str, list[str]] = {}
    current = None
    for arg in args[1:]:
        if arg.startswith("--"):
            current = arg.split("=", 1)[0]
            values.setdefault(current, [])
        else:
            assert current is not None, f"a value before any flag: {arg}"
            values[current].append(arg)
    return values


def test_the_compose_file_pins_every_image(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"service {name} names no image"
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag and tag != "latest", f"{name}: {image} has no pinned tag"
        assert image in PUBLIC_IMAGES or image in BUILT_HERE, f"{name}: {image} is neither checked nor built here"
        if image in BUILT_HERE:
            assert (ROOT / BUILT_HERE[image]).is_file()


def test_every_public_image_is_in_the_docs_table(compose):
    doc = DOC.read_text()
    for service in compose["services"].values():
        assert f"| `{service['image']}` |" in doc, f"{service['image']} is not in docs/DEPLOY.md, \"Images\""


# Folders the compose file mounts that the operator provides (docs/DEPLOY.md says so): nothing else may be missing.
PROVIDED_BY_YOU = {"./adapters"}


def _mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each of a service's volumes (`source:target[:mode]`)."""
    return [(volume.split(":")[0], volume.split(":")[1]) for volume in service.get("volumes") or []]


def test_every_mounted_file_is_in_the_repository_and_every_volume_is_declared(compose):
    declared = set(compose.get("volumes") or {})
    doc = DOC.read_text()
    for name, service in compose["services"].items():
        for source, target in _mounts(service):
            assert target.startswith("/"), f"{name}: {target}"
            if not source.startswith("."):
                assert source in declared, f"{name}: the volume {source} is not declared"
            elif source in PROVIDED_BY_YOU:
                assert f"deploy/{source.removeprefix('./')}/" in doc, f"{source} is not documented as yours"
            else:
                assert (DEPLOY / source).exists(), f"{name}: {source} is not in the repository"


def _replicas(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == "coe-router:0.1.0"}


def _shell_flag(command: str, flag: str) -> str:
    match = re.search(rf"{re.escape(flag)}=(\S+)", command)
    assert match, f"{flag} not in {command!r}"
    return match.group(1)


def test_prometheus_scrapes_every_replica_on_its_port_and_the_services_metrics_path(compose):
    from coe_router.serve.app import create_app
    from coe_router.serve.auth import needs_token

    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    ports = {name: service["command"][service["command"].index("--port") + 1]
             for name, service in _replicas(compose).items()}
    assert sorted(targets) == sorted(f"{name}:{port}" for name, port in ports.items())
    paths = {route.path for route in create_app(lambda: None, token_env=None).routes}
    assert job["metrics_path"] == "/metrics" and job["metrics_path"] in paths
    # the token the replicas read, handed to the scraper by file: the path the prometheus service writes at start
    assert needs_token(job["metrics_path"]) and job["authorization"]["type"] == "Bearer"
    prometheus = compose["services"]["prometheus"]
    (command,) = prometheus["command"]
    assert prometheus["entrypoint"] == ["/bin/sh", "-c"]
    assert f'"$${{COE_API_TOKEN}}" > {job["authorization"]["credentials_file"]}' in command
    assert prometheus["environment"]["COE_API_TOKEN"] == "${COE_API_TOKEN:-}"
    assert all(s["environment"]["COE_API_TOKEN"] == "${COE_API_TOKEN:-}" for s in _replicas(compose).values())
    assert "credentials:" not in (DEPLOY / "prometheus.yml").read_text()  # no secret in the file
    mounted = dict((target, source) for source, target in _mounts(prometheus))
    assert mounted[_shell_flag(command, "--config.file")] == "./prometheus.yml"
    assert _shell_flag(command, "--web.listen-address") == ":9090" and "9090:9090" in prometheus["ports"]
    assert set(prometheus["depends_on"]) == set(ports)


def test_grafana_is_provisioned_with_that_prometheus_and_the_dashboard_that_exists(compose):
    grafana = compose["services"]["grafana"]
    mounted = dict((target, source) for source, target in _mounts(grafana))
    sources = mounted["/etc/grafana/provisioning/datasources"], mounted["/etc/grafana/provisioning/dashboards"]
    (datasources,) = [yaml.safe_load(p.read_text()) for p in sorted((DEPLOY / sources[0]).glob("*.y*ml"))]
    (providers,) = [yaml.safe_load(p.read_text()) for p in sorted((DEPLOY / sources[1]).glob("*.y*ml"))]
    assert datasources["apiVersion"] == 1 and providers["apiVersion"] == 1
    (source,) = datasources["datasources"]
    url = urlsplit(source["url"])
    prometheus = compose["services"]["prometheus"]
    assert source["type"] == "prometheus" and source["isDefault"] and source["access"] == "proxy"
    assert url.hostname == "prometheus" and url.hostname in compose["services"]
    assert f":{url.port}" == _shell_flag(prometheus["command"][0], "--web.listen-address")
    assert "prometheus" in grafana["depends_on"]
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    folder = provider["options"]["path"].rstrip("/")
    dashboards = {target: source for target, source in mounted.items() if target.startswith(folder + "/")}
    assert dashboards, f"nothing is mounted in {folder}"
    for target, path in dashboards.items():
        assert target.endswith(".json") and (DEPLOY / path).resolve() == DEPLOY / "grafana" / "coe-router-dashboard.json"
        dashboard = json.loads((DEPLOY / path).read_text())
        assert dashboard["uid"] and dashboard["panels"]
        (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert variable["query"] == source["type"]  # the variable picks the provisioned (default) datasource
        assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {"${%s}" % variable["name"]}


def test_the_chroma_server_image_matches_the_client_the_router_is_tested_with(compose):
    import chromadb

    assert compose["services"]["chroma"]["image"] == f"chromadb/chroma:{chromadb.__version__}"


def test_vllm_uses_only_documented_flags_and_a_consistent_lora_setup(compose):
    args = _vllm_args(compose)
    assert not args[0].startswith("--"), "the base model comes first"
    flags = _flag_values(args)
    assert set(flags) <= DOCUMENTED_VLLM_FLAGS, set(flags) - DOCUMENTED_VLLM_FLAGS
    doc = DOC.read_text()
    for flag in flags:
        assert f"`{flag}`" in doc, f"{flag} is not in the documented-flags list of docs/DEPLOY.md"
    assert flags["--enable-lora"] == []
    adapters = dict(module.split("=", 1) for module in flags["--lora-modules"])
    assert len(adapters) >= 2 and all(path.startswith("/adapters/") for path in adapters.values())
    assert int(flags["--max-loras"][0]) >= len(adapters)
    assert int(flags["--max-cpu-loras"][0]) >= int(flags["--max-loras"][0])
    assert int(flags["--max-lora-rank"][0]) in VLLM_LORA_RANKS
    assert 0 < float(flags["--gpu-memory-utilization"][0]) <= 1


def test_router_yaml_loads_and_names_the_services_of_the_compose_file(router, compose):
    services = compose["services"]
    assert router.persistence.checkpointer == "postgres" and router.persistence.review_unknown
    chroma = urlsplit(router.retriever.chroma_url)
    assert chroma.hostname in services and chroma.port == 8000
    flags = _flag_values(_vllm_args(compose))
    served = set(flags["--served-model-name"]) | {m.split("=", 1)[0] for m in flags["--lora-modules"]}
    port = int(flags["--port"][0])
    for name, spec in router.models.items():
        url = urlsplit(spec.base_url)
        assert url.hostname == "vllm" and url.port == port, name
        assert spec.model in served, f"models.{name}: {spec.model} is not served by vLLM ({sorted(served)})"
        assert spec.api_key_env in services["coe-1"]["environment"]
    # One base model, several experts: the shared-backbone layout (CCoE), all through one endpoint.
    assert len({spec.base_url for spec in router.models.values()}) == 1 and len(router.experts) >= 3


def test_every_replica_gets_the_dsn_the_router_reads_and_mounts_the_same_config(router, compose):
    replicas = {name: s for name, s in compose["services"].items() if s.get("image") == "coe-router:0.1.0"}
    assert len(replicas) >= 2
    for service in replicas.values():
        dsn = urlsplit(service["environment"][router.persistence.dsn_env])
        assert dsn.scheme == "postgresql" and dsn.hostname in compose["services"]
        assert "./router.yaml:/deploy/router.yaml:ro" in service["volumes"]
        assert "/deploy/router.yaml" in service["command"]
        mounted_examples = [v for v in service["volumes"] if v.endswith(":/deploy/examples.jsonl:ro")]
        assert mounted_examples and (DEPLOY / mounted_examples[0].split(":")[0]).is_file()
    upstream = re.findall(r"server\s+([\w-]+):8000", (DEPLOY / "nginx.conf").read_text())
    assert sorted(upstream) == sorted(replicas)


def test_the_unset_dsn_is_one_line_naming_the_field(monkeypatch):
    from coe_router import ConfigError
    from coe_router.persistence import checkpointer_from_config

    monkeypatch.setenv("VLLM_API_KEY", "change-me")
    monkeypatch.delenv("COE_POSTGRES_DSN", raising=False)
    with pytest.raises(ConfigError) as caught:
        checkpointer_from_config(load_config(DEPLOY / "router.yaml"))
    assert str(caught.value).startswith("persistence.dsn_env: the environment variable COE_POSTGRES_DSN is not set")
    assert "\n" not in str(caught.value)


def test_the_agent_server_config_is_accepted_by_langgraph_cli_and_sets_postgres_checkpoints(compose):
    cli_config = pytest.importorskip("langgraph_cli.config")
    path = DEPLOY / "langgraph.json"
    config = cli_config.validate_config_file(path)
    for graph in config["graphs"].values():
        graph_path = graph["path"] if isinstance(graph, dict) else graph
        assert (DEPLOY / graph_path.split(":")[0]).resolve().is_file()
    assert config["checkpointer"]["ttl"]["strategy"] == "delete"
    root_graphs = json.loads((ROOT / "langgraph.json").read_text())["graphs"]
    assert set(config["graphs"]) == {"coe"} <= set(root_graphs)  # router.yaml has no planner: no planning graph
    server = compose["services"]["agent-server"]
    assert {"DATABASE_URI", "REDIS_URI"} <= set(server["environment"])
    assert urlsplit(server["environment"]["REDIS_URI"]).hostname in compose["services"]
    database = urlsplit(server["environment"]["DATABASE_URI"]).path.strip("/")
    assert f"CREATE DATABASE {database};" in (DEPLOY / "postgres-init.sql").read_text()


def test_retriever_server_and_folder_are_exclusive(tmp_path):
    from coe_router import ConfigError
    from tests.unit.conftest import write_config

    both = write_config(tmp_path, retriever={"chroma_url": "http://chroma:8000", "persist_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"retriever.*chroma_url: give either"):
        load_config(both)
    with pytest.raises(ConfigError, match=r"retriever\.chroma_url"):
        load_config(write_config(tmp_path, retriever={"chroma_url": "chroma:8000"}))
    server = load_config(write_config(tmp_path, retriever={"chroma_url": "http://chroma:8000"}))
    assert server.retriever.check_every_s == 0.0
    assert load_config(write_config(tmp_path)).retriever.check_every_s == 1.0
    assert load_config(write_config(tmp_path, persistence={"checkpointer": "postgres"})).persistence.dsn_env == \
        "COE_POSTGRES_DSN"
    with pytest.raises(ConfigError, match=r"persistence\.dsn_env"):
        load_config(write_config(tmp_path, persistence={"checkpointer": "postgres", "dsn_env": "postgres://x"}))


def test_the_image_build_context_leaves_out_local_environments_and_caches():
    """deploy/Dockerfile copies the repository root and runs ./install.sh in the image: a checkout's own virtual
    environments (.venv, and .venv-litellm of COE_WITH_LITELLM=1) must not be sent along, nor git history."""
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv/", ".venv-litellm/", ".git/", "**/__pycache__/"} <= ignored
    assert "COPY . /app" in (DEPLOY / "Dockerfile").read_text()
    assert not {"install.sh", "pyproject.toml", "coe_router/", "data/"} & ignored  # what the build needs stays
