"""Real HorizontalPodAutoscalers on the test bed: metrics-server, built from its Go module, and
kwok's metrics emulation, so that each member's own HPA controller scales Deployments.

kwok's controller serves each node's ``/metrics/resource`` endpoint (the kubelet's), with pod
CPU and memory usage read from the pods' ``kwok.x-k8s.io/usage-cpu`` and ``usage-memory``
annotations (``usage-from-annotation.yaml``); metrics-server scrapes it and serves
``metrics.k8s.io``; the member's kube-controller-manager runs the HPA controller on it. A test
raises the load in one member by giving that member's pods a higher usage annotation.

The build copies the manifests kwokctl needs next to the binary: metrics-server's
``manifests/base`` (kwokctl runs ``kubectl kustomize`` on it; without it, kwokctl downloads a
release manifest and fails offline) and kwok's two metrics configurations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from fleetflow.errors import BuildError
from fleetflow.testbed import build

METRICS_SERVER_VERSIONS = ("v0.8.0",)
METRICS_SERVER_PACKAGE = "sigs.k8s.io/metrics-server/cmd/metrics-server"

USAGE_CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"
"""On a pod (or a pod template): the CPU the pod uses, as kwok reports it to metrics-server."""

FILES = "metrics"
"""Under the binaries' directory: the manifests and configurations the members start with."""
MANIFESTS = "metrics-server-base"
CONFIGS = ("metrics-resource.yaml", "usage-from-annotation.yaml")
KWOK_CONFIGS = {
    "metrics-resource.yaml": "kustomize/metrics/resource/metrics-resource.yaml",
    "usage-from-annotation.yaml": "kustomize/metrics/usage/usage-from-annotation.yaml",
}


def files_dir() -> Path:
    return build.bin_dir() / FILES


def manifests_dir() -> Path:
    return files_dir() / MANIFESTS


def config_files() -> list[Path]:
    return [files_dir() / name for name in CONFIGS]


def _module(workdir: Path, version: str) -> list[str]:
    requires = [f"sigs.k8s.io/metrics-server {version}"]
    return build.write_go_module(workdir, "metrics-server", requires, [METRICS_SERVER_PACKAGE])


def _module_dir(workdir: Path, module: str) -> Path:
    """Where the go command keeps a module's files (downloading it if it must)."""
    proc = subprocess.run(
        [build.go_binary(), "mod", "download", "-json", module],
        cwd=workdir,
        env=dict(os.environ, GOFLAGS="-mod=mod"),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        found = json.loads(proc.stdout)
        return Path(found["Dir"])
    except (ValueError, KeyError) as exc:
        detail = (proc.stderr or proc.stdout).strip()[-1000:]
        raise BuildError(f"go mod download {module} gave no directory: {detail}") from exc


def _copy_files(workdir: Path, out: Path, version: str) -> None:
    """metrics-server's base manifests and kwok's metrics configurations, beside the binary."""
    target = out / FILES
    shutil.rmtree(target, ignore_errors=True)
    server = _module_dir(workdir, f"sigs.k8s.io/metrics-server@{version}")
    shutil.copytree(server / "manifests" / "base", target / MANIFESTS)
    kwok = _module_dir(workdir, f"sigs.k8s.io/kwok@{build.KWOK_VERSIONS[0]}")
    for name, path in KWOK_CONFIGS.items():
        shutil.copyfile(kwok / path, target / name)
    for copied in target.rglob("*"):  # the module cache's files are read-only
        copied.chmod(0o755 if copied.is_dir() else 0o644)


COMPONENTS = (
    build.Component(
        "metrics-server",
        METRICS_SERVER_VERSIONS,
        (
            "metrics-server",
            f"{FILES}/{MANIFESTS}/kustomization.yaml",
            *(f"{FILES}/{name}" for name in CONFIGS),
        ),
        _module,
        after_build=_copy_files,
    ),
)
