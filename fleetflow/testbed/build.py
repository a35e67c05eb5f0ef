"""Build the test bed's binaries from the upstream Go modules into a cache outside the repository.

Only the Go toolchain and the Go module proxy are used: no release downloads, no containers.
The module has no third-party imports, so that a fresh machine can start the (long) cold build
before the Python environment is complete: ``python3 -m fleetflow.testbed.build``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetflow.errors import BuildError
from fleetflow.settings import settings

KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ETCD_BINARIES = ("etcd",)
KWOK_BINARIES = ("kwok", "kwokctl")

# Preferred version first, then the neighbouring patch releases to try if the proxy refuses it.
KUBE_VERSIONS = ("v1.36.3", "v1.36.4", "v1.36.2", "v1.36.5", "v1.36.1")
ETCD_VERSIONS = ("v3.6.16", "v3.6.15", "v3.6.14", "v3.6.13")
KWOK_VERSIONS = ("v0.8.0",)

# Staging modules of k8s.io/kubernetes; each is replaced by its published v0.X.Y.
KUBE_STAGING = (
    "api",
    "apiextensions-apiserver",
    "apimachinery",
    "apiserver",
    "cli-runtime",
    "client-go",
    "cloud-provider",
    "cluster-bootstrap",
    "code-generator",
    "component-base",
    "component-helpers",
    "controller-manager",
    "cri-api",
    "cri-client",
    "cri-streaming",
    "csi-translation-lib",
    "dynamic-resource-allocation",
    "endpointslice",
    "externaljwt",
    "kms",
    "kube-aggregator",
    "kube-controller-manager",
    "kube-proxy",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "metrics",
    "mount-utils",
    "pod-security-admission",
    "sample-apiserver",
    "sample-cli-plugin",
    "sample-controller",
    "streaming",
)

ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""

Progress = Callable[[str], None]


def cache_dir() -> Path:
    """Where built binaries live: ``$FLEETFLOW_TESTBED_CACHE`` or the user's cache directory."""
    return settings().testbed_cache.expanduser()


def bin_dir() -> Path:
    return cache_dir() / "bin"


def manifest_path() -> Path:
    return bin_dir() / "versions.json"


def _built() -> dict[str, str]:
    """The versions of the components whose binaries are all in the cache."""
    try:
        versions = json.loads(manifest_path().read_text())
    except (OSError, ValueError):
        return {}
    return {
        c.name: versions[c.name]
        for c in components()
        if c.name in versions and all((bin_dir() / b).is_file() for b in c.binaries)
    }


def cached_versions() -> dict[str, str] | None:
    """The versions of a complete cached build, or None when anything is missing."""
    built = _built()
    return built if len(built) == len(components()) else None


@dataclass(frozen=True)
class Component:
    """One wrapper module and the binaries built from it."""

    name: str
    versions: tuple[str, ...]
    binaries: tuple[str, ...]
    # Components defined next to the processes they run (dns.py) write their own wrapper module,
    # and name a newer Go when their module needs one (the go command fetches it from the proxy).
    write_module: Callable[[Path, str], list[str]] | None = None
    toolchain: str = ""
    # Files a component needs beside its binaries (manifests from its module), copied from the
    # module cache after the build: (workdir, binaries' directory, version).
    after_build: Callable[[Path, Path, str], None] | None = None


COMPONENTS = (
    Component("etcd", ETCD_VERSIONS, ETCD_BINARIES),
    Component("kwok", KWOK_VERSIONS, KWOK_BINARIES),
    Component("kubernetes", KUBE_VERSIONS, KUBE_BINARIES),
)


def components() -> tuple[Component, ...]:
    """Every component: the clusters' first, then the DNS chain's, then the members' metrics."""
    # imported here: they build on this module's helpers
    from fleetflow.testbed import dns, metrics

    return (*COMPONENTS, *dns.COMPONENTS, *metrics.COMPONENTS)


def go_binary() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain is not on PATH: install Go 1.26 or newer, then retry")
    return go


def _run(
    cmd: Sequence[str], cwd: Path, progress: Progress, label: str, toolchain: str = ""
) -> None:
    """Run a go command, reporting how many packages it has compiled every few seconds."""
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    if toolchain:
        env["GOTOOLCHAIN"] = toolchain
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    tail: list[str] = []
    packages = 0
    last = started
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail, line][-40:]
        if line and not line.startswith(("go: ", "#")) and " " not in line:
            packages += 1
        now = time.monotonic()
        if now - last >= 15:
            progress(f"  {label}: {packages} packages compiled, {now - started:.0f}s elapsed")
            last = now
    if proc.wait() != 0:
        raise BuildError(f"{label} failed ({' '.join(cmd)} in {cwd}):\n" + "\n".join(tail))


def _write_module(workdir: Path, component: Component, version: str) -> list[str]:
    """Write the wrapper module for one component; return the packages to build."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("go.mod", "go.sum"):
        (workdir / stale).unlink(missing_ok=True)
    if component.write_module is not None:
        return component.write_module(workdir, version)
    if component.name == "etcd":
        requires = [f"go.etcd.io/etcd/server/v3 {version}"]
        return write_go_module(workdir, component.name, requires, main=ETCD_MAIN)
    if component.name == "kwok":
        requires = [f"sigs.k8s.io/kwok {version}"]
        packages = [f"sigs.k8s.io/kwok/cmd/{b}" for b in component.binaries]
        return write_go_module(workdir, component.name, requires, packages)
    staging = "v0." + version.removeprefix("v1.")
    requires = [f"k8s.io/kubernetes {version}"]
    packages = [f"k8s.io/kubernetes/cmd/{b}" for b in component.binaries]
    replaces = [f"k8s.io/{m} => k8s.io/{m} {staging}" for m in KUBE_STAGING]
    return write_go_module(workdir, component.name, requires, packages, replaces)


def write_go_module(
    workdir: Path,
    name: str,
    requires: Sequence[str],
    packages: Sequence[str] = (),
    replaces: Sequence[str] = (),
    *,
    main: str = "",
    go: str = "1.26",
) -> list[str]:
    """Write go.mod, and main.go (``main`` given) or a tools.go importing ``packages``.

    Return the packages to build: ``.`` for a main.go.
    """
    if main:
        (workdir / "main.go").write_text(main)
    else:
        imports = "\n".join(f'\t_ "{p}"' for p in packages)
        (workdir / "tools.go").write_text(
            f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
        )
    go_mod = [f"module fleetflow.local/testbed/{name}", "", f"go {go}", "", "require ("]
    go_mod += [f"\t{r}" for r in requires] + [")"]
    if replaces:
        go_mod += ["", "replace ("] + [f"\t{r}" for r in replaces] + [")"]
    (workdir / "go.mod").write_text("\n".join(go_mod) + "\n")
    return ["."] if main else list(packages)


def _ldflags(component: Component, version: str, kube_version: str) -> str:
    if component.name == "kubernetes":
        major, minor, _ = version.removeprefix("v").split(".")
        values = {
            "gitVersion": version,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
        }
        pkgs = ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
        return " ".join(f"-X '{p}.{k}={v}'" for p in pkgs for k, v in values.items())
    if component.name == "kwok":
        return (
            f"-X sigs.k8s.io/kwok/pkg/consts.Version={version.removeprefix('v')} "
            f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={kube_version.removeprefix('v')}"
        )
    if component.name == "metrics-server":  # as its Makefile stamps it; kwokctl reads it
        return f"-X k8s.io/client-go/pkg/version.gitVersion={version}"
    return ""


def _build_component(
    component: Component, out: Path, work: Path, kube_version: str, progress: Progress
) -> str:
    go = go_binary()
    errors: list[str] = []
    for version in component.versions:
        workdir = work / component.name
        label = f"{component.name} {version}"
        try:
            packages = _write_module(workdir, component, version)
            progress(f"{label}: resolving modules")
            tidy = f"{label} (go mod tidy)"
            _run([go, "mod", "tidy"], workdir, progress, tidy, component.toolchain)
            binaries = ", ".join(b for b in component.binaries if "/" not in b)
            progress(f"{label}: compiling {binaries}")
            if packages == ["."]:
                cmd = [go, "build", "-v", "-trimpath", "-o", str(out / component.binaries[0]), "."]
            else:
                cmd = [go, "build", "-v", "-trimpath", "-o", str(out) + "/", *packages]
            flags = _ldflags(component, version, kube_version)
            if flags:
                cmd[3:3] = ["-ldflags", flags]
            _run(cmd, workdir, progress, label, component.toolchain)
            if component.after_build is not None:
                component.after_build(workdir, out, version)
            return version
        except BuildError as exc:
            errors.append(str(exc))
            progress(f"{label}: failed, trying the next patch release if any")
    raise BuildError(f"no version of {component.name} built:\n\n" + "\n\n".join(errors))


def build(progress: Progress = print, force: bool = False) -> dict[str, str]:
    """Build every test-bed binary into :func:`bin_dir`; a complete cached build does nothing."""
    cached = cached_versions()
    if cached is not None and not force:
        progress(f"test-bed binaries already built in {bin_dir()}: {cached}")
        return cached
    out = bin_dir()
    out.mkdir(parents=True, exist_ok=True)
    work = cache_dir() / "src"
    # Keep what is already built: adding a component must not rebuild Kubernetes.
    versions = {} if force else _built()
    started = time.monotonic()
    for component in components():
        if component.name not in versions:
            versions[component.name] = _build_component(
                component, out, work, KUBE_VERSIONS[0], progress
            )
            manifest_path().write_text(json.dumps(versions, indent=2) + "\n")
    progress(f"built {', '.join(versions)} in {time.monotonic() - started:.0f}s into {out}")
    return versions


if __name__ == "__main__":
    try:
        build(progress=lambda m: print(m, flush=True), force="--force" in sys.argv)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
