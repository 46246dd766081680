"""cluster.yaml (Ray cluster launcher) and the KubeRay manifests carry the keys each tool needs."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_cluster_launcher_config():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    for key in ("cluster_name", "max_workers", "provider", "auth", "available_node_types",
                "head_node_type", "setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands"):
        assert key in config, key
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}, "the head runs no work"
    gpu = [t for t in types.values() if t["resources"].get("GPU")]
    cpu = [t for n, t in types.items()
           if n != config["head_node_type"] and not t["resources"].get("GPU")]
    assert gpu and cpu, "CPU workers for decode/ELA and GPU workers for the models"
    for spec in types.values():
        assert "InstanceType" in spec["node_config"]
        assert spec.get("min_workers", 0) <= spec.get("max_workers", config["max_workers"])
    assert sum(t.get("max_workers", 0) for t in types.values()) >= config["max_workers"]


def test_rayjob_runs_the_scan_job():
    job = yaml.safe_load((REPO / "deployments" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/scan.py"] and "--out" in argv
    assert (REPO / argv[1]).exists()
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c["image"] and c["resources"]["limits"] for c in containers)
    assert any("nvidia.com/gpu" in c["resources"]["limits"]
               for g in cluster["workerGroupSpecs"] for c in g["template"]["spec"]["containers"])
    required = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams"}
    for group in cluster["workerGroupSpecs"]:
        assert required <= set(group)
