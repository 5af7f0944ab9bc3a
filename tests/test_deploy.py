"""The Kubernetes manifests point at real routes and mount secrets as files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config import parse_public_base_url, parse_trusted_hosts

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def documents() -> list[dict]:
    return [
        doc for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]


def of_kind(kind: str) -> list[dict]:
    return [doc for doc in documents() if doc and doc["kind"] == kind]


def pod_specs() -> list[dict]:
    specs = [d["spec"]["template"]["spec"] for d in of_kind("Deployment") + of_kind("Job")]
    return specs + [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in of_kind("CronJob")]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_probes_hit_real_routes_on_the_served_port(app):
    (deployment,) = of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    routes = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert routes[probes["readinessProbe"]["path"]] == "health.readyz"
    assert routes[probes["livenessProbe"]["path"]] in ("health.livez", "health.healthz")
    assert routes[probes["startupProbe"]["path"]] in ("health.livez", "health.healthz")
    assert all(probe["port"] in ports for probe in probes.values())
    assert "8000" in (DEPLOY / "Dockerfile").read_text()  # gunicorn.conf.py binds the container port
    (service,) = of_kind("Service")
    assert all(port["targetPort"] in ports for port in service["spec"]["ports"])
    # preStop outlasts a readiness period, and the pod's grace outlasts the preStop sleep.
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    readiness = container["readinessProbe"]
    assert sleep > readiness["periodSeconds"] * readiness.get("failureThreshold", 3)
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > sleep + 60


def test_secrets_are_mounted_as_files_never_env_values():
    secret_names = {doc["metadata"]["name"] for doc in of_kind("Secret")}
    for spec in pod_specs():
        mounted = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        for container in spec["containers"]:
            env = {item["name"]: item for item in container.get("env", [])}
            assert not any("valueFrom" in item for item in env.values()), "secrets must not be env values"
            assert not {"SECRET_KEY", "AUDIT_KEY", "DATABASE_URL"} & set(env)
            mount_paths = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in mounted}
            for name in ("SECRET_KEY_FILE", "AUDIT_KEY_FILE", "DATABASE_URL_FILE"):
                assert any(env[name]["value"].startswith(path + "/") for path in mount_paths), name
        assert set(mounted.values()) <= secret_names


def test_jobs_migrate_as_owner_and_verify_the_chain():
    (job,) = of_kind("Job")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"][-3:] == ["manage.py", "db", "upgrade"]
    assert {e["name"]: e["value"] for e in migrate["env"]}["DATABASE_URL_FILE"].endswith("owner-database-url")
    (cron,) = of_kind("CronJob")
    (verify,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert verify["command"][1:4] == ["manage.py", "audit", "verify"]
    assert "--record" in verify["command"]  # every replica's /metrics reports the recorded result


def test_configmap_carries_a_catalogue_mounted_where_the_app_reads_it():
    (configmap,) = of_kind("ConfigMap")
    assert "commands.yaml" in configmap["data"]
    (deployment,) = of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "commands")
    assert env["GATEWAY_COMMANDS_FILE"] == mount["mountPath"] + "/commands.yaml"


def test_every_container_links_to_one_public_base_url_and_the_gateway_trusts_only_its_host():
    # Production refuses to start without PUBLIC_BASE_URL (the jobs too: they build the same app).
    bases = set()
    for spec in pod_specs():
        for container in spec["containers"]:
            env = {e["name"]: e["value"] for e in container["env"]}
            bases.add(parse_public_base_url(env["PUBLIC_BASE_URL"], "production"))
    (base,) = bases
    assert base.startswith("https://")
    (deployment,) = of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert parse_trusted_hosts(env["TRUSTED_HOSTS"], base)  # refuses other Hosts; admits the links' own
