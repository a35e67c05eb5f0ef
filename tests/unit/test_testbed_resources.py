"""What a test bed needs from the machine: system packages and memory. Pure decisions only."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fleetflow.testbed import memory, packages
from fleetflow.testbed.memory import Footprint, Part, RunningBed
from fleetflow.testbed.spec import MemberSpec, TestbedSpec

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = packages.package("chromium")
REDIS = packages.package("redis-server")


def test_root_installs_the_missing_packages_with_apt_get_after_one_line_that_says_why() -> None:
    decision = packages.decide([CHROMIUM, REDIS], root=True, has_apt=True, has_sudo=False)
    assert len(decision.lines) == 1
    assert "chromium for the browser test" in decision.lines[0]
    assert "redis-server for the tests of a Prefect server of several" in decision.lines[0]
    assert decision.commands[-1][-2:] == ("chromium", "redis-server")
    assert all(c[0] == "env" and "apt-get" in c for c in decision.commands)
    assert decision.commands[0][-2:] == ("update", "-qq")


def test_another_user_installs_through_sudo() -> None:
    decision = packages.decide([CHROMIUM], root=False, has_apt=True, has_sudo=True)
    assert [c[0] for c in decision.commands] == ["sudo", "sudo"]


def test_without_apt_get_each_missing_package_is_one_line_and_nothing_runs() -> None:
    decision = packages.decide([CHROMIUM, REDIS], root=True, has_apt=False, has_sudo=True)
    assert decision.commands == ()
    assert len(decision.lines) == 2
    assert decision.lines[0].startswith("chromium is not installed: the browser test")
    assert "no apt-get here" in decision.lines[0]
    stuck = packages.decide([REDIS], root=False, has_apt=True, has_sudo=False)
    assert stuck.commands == () and "not root and no sudo" in stuck.lines[0]


def test_nothing_missing_is_silent() -> None:
    assert packages.decide([], root=True, has_apt=True, has_sudo=True) == packages.Decision(())


def test_each_target_needs_its_own_packages() -> None:
    assert {p.name for p in packages.missing("test", lambda p: False)} == {
        "chromium",
        "postgresql",
        "redis-server",
        "rsync",
    }
    assert [p.name for p in packages.missing("up", lambda p: False)] == ["rsync", "bind9-dnsutils"]
    assert packages.missing("test", lambda p: p.name != "redis-server") == [REDIS]


def test_the_missing_line_says_what_needs_it_and_how_to_get_it() -> None:
    line = packages.missing_line(packages.package("postgresql"))
    assert "\n" not in line
    assert "PostgreSQL" in line and "`make test` installs it" in line and "'postgresql'" in line


def test_make_installs_the_packages_before_anything_else_and_ci_runs_only_make_test() -> None:
    rules = dict(re.findall(r"^([a-z-]+):([^=\n#]*)", (ROOT / "Makefile").read_text(), flags=re.M))
    assert rules["test"].split()[0] == "packages-test"
    assert rules["up"].split()[0] == "packages-up"
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ci[-1] == "make test"
    assert not any("apt-get" in line for line in ci)


FOOT = Footprint(host=500, member=400, node=2.0, dns=100, stack=900, api_process=300, suite=2000)
SPEC = TestbedSpec()


def test_a_bed_needs_its_clusters_and_its_dns_chain() -> None:
    parts = memory.bed_parts(SPEC, footprint=FOOT)
    assert parts == [Part("host host", 500), Part("3 members", 1200), Part("DNS chain", 100)]
    only = memory.bed_parts(SPEC, ["us-east-2"], dns=False, footprint=FOOT)
    assert only == [Part("1 member", 400)]


def test_nodes_beyond_three_count() -> None:
    spec = TestbedSpec(members=[MemberSpec(name="a", region="r", nodes=53)])
    assert memory.cluster_parts(spec, ["a"], FOOT) == [Part("1 member", 400 + 100)]


def test_more_api_processes_need_more() -> None:
    assert memory.stack_parts(1, FOOT) == [Part("Prefect server and worker", 900)]
    # Four API processes and the services process.
    assert memory.stack_parts(4, FOOT)[0].mib == 900 + 4 * 300


def test_what_fits_is_not_refused() -> None:
    need = memory.bed_parts(SPEC, footprint=FOOT)  # 1,800 MiB
    assert memory.refusal(need, available_mib=3848, reserve_mib=2048) is None


def test_what_does_not_fit_is_one_line_naming_the_other_bed_and_the_smaller_size() -> None:
    need = memory.bed_parts(SPEC, footprint=FOOT) + memory.suite_parts(FOOT)
    other = RunningBed(Path("/tmp/x/fleetflow-home0/testbed"), 2600, stack=True)
    line = memory.refusal(
        need, available_mib=5000, reserve_mib=2048, others=[other], fitting_members=1
    )
    assert line is not None and "\n" not in line
    assert line.startswith("not enough memory: this needs about 3.7 GiB: host host 0.5 GiB")
    assert "the test session 2.0 GiB; the machine has" in line
    assert "4.9 GiB available and keeps 2.0 GiB free" in line
    assert "`FLEETFLOW_HOME=/tmp/x/fleetflow-home0 fleetflow down`" in line
    assert line.endswith("or ask for at most 1 member (--member)")


def test_with_nothing_to_stop_and_no_smaller_size_it_says_so() -> None:
    line = memory.refusal([Part("host host", 500)], available_mib=100, reserve_mib=0)
    assert line is not None and line.endswith("or use a machine with more")


def test_a_bed_without_a_stack_is_stopped_with_testbed_down() -> None:
    bed = RunningBed(Path("/home/u/.fleetflow/testbed"), 900)
    assert bed.stop_command() == "FLEETFLOW_HOME=/home/u/.fleetflow fleetflow testbed down"


@given(
    room=st.integers(min_value=0, max_value=20_000),
    more=st.integers(min_value=0, max_value=5_000),
    count=st.integers(min_value=1, max_value=12),
)
def test_more_room_never_fits_fewer_members_and_what_fits_is_not_refused(
    room: int, more: int, count: int
) -> None:
    spec = TestbedSpec(members=[MemberSpec(name=f"m{i}", region="r") for i in range(count)])
    beside = memory.suite_parts(FOOT)
    fits = memory.members_that_fit(spec, room, beside, FOOT)
    assert 0 <= fits <= count
    assert memory.members_that_fit(spec, room + more, beside, FOOT) >= fits
    if fits:
        smaller = spec.model_copy(update={"members": spec.members[:fits]})
        need = memory.bed_parts(smaller, footprint=FOOT) + beside
        assert memory.refusal(need, available_mib=room, reserve_mib=0) is None
    if fits < count:
        bigger = spec.model_copy(update={"members": spec.members[: fits + 1]})
        need = memory.bed_parts(bigger, footprint=FOOT) + beside
        assert memory.refusal(need, available_mib=room, reserve_mib=0) is not None


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684012 kB\nMemAvailable:    3145728 kB\n")
    assert memory.available_mib(meminfo) <= 3072


def test_a_cgroup_limit_caps_what_is_available(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "jobs" / "a").mkdir(parents=True)
    (v2 / "jobs" / "a" / "memory.max").write_text(f"{3 * 1024 * memory.MIB}\n")
    (v2 / "jobs" / "a" / "memory.current").write_text(f"{1024 * memory.MIB}\n")
    membership = tmp_path / "cgroup"
    membership.write_text("0::/jobs/a\n")
    assert memory.cgroup_room_mib(v2, membership) == 2048
    (v2 / "jobs" / "a" / "memory.max").write_text("max\n")
    assert memory.cgroup_room_mib(v2, membership) is None
    v1 = tmp_path / "v1" / "memory" / "job"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("5580873728\n")
    membership.write_text("9:name=systemd:/\n4:memory:/job\n0::/\n")
    assert memory.cgroup_room_mib(tmp_path / "v1", membership) is None
    (v1 / "memory.limit_in_bytes").write_text(f"{6 * 1024 * memory.MIB}\n")
    assert memory.cgroup_room_mib(tmp_path / "v1", membership) == 6144 - 5323


def test_a_bed_is_found_by_the_paths_its_processes_were_given() -> None:
    bed = "/tmp/pytest-of-root/pytest-3/fleetflow-home0/testbed"
    apiserver = [
        "/root/.cache/fleetflow/testbed/bin/kube-apiserver",
        "--etcd-servers=http://127.0.0.1:27500",
        f"--client-ca-file={bed}/kwok/clusters/host/pki/ca.crt",
    ]
    assert memory.bed_directory(apiserver) == Path(bed)
    coredns = ["/root/.cache/fleetflow/testbed/bin/coredns", "-conf", f"{bed}/dns/Corefile"]
    assert memory.bed_directory(coredns) == Path(bed)
    assert memory.bed_directory(["/usr/bin/python3", f"{bed}/kwok/clusters/host/x"]) is None
    assert memory.bed_directory(["/usr/bin/etcd", "--data-dir=/var/lib/etcd"]) is None
