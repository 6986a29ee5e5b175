"""Finding a container's cgroup on this host: the engines' usual layouts, and where the
container's own process says it is (an engine started with its own --cgroup-parent)."""

from pathlib import Path

from algohost.sandbox.cgroup import ContainerCgroup

CID = "eed13c1c121cb4c91e01d1f5e10eba9a53b97257f4ba9babcc9b06df8c981d38"


def v1_group(root: Path, controller: str, path: str) -> Path:
    group = root / controller / path
    group.mkdir(parents=True)
    (group / "cgroup.procs").write_text("12124\n")
    if controller == "memory":
        (group / "memory.max_usage_in_bytes").write_text("8949760\n")
    return group


def test_the_engines_default_layout_is_found_by_name(tmp_path: Path) -> None:
    memory = v1_group(tmp_path, "memory", f"docker/{CID}")
    pids = v1_group(tmp_path, "pids", f"docker/{CID}")
    found = ContainerCgroup.find(CID, root=tmp_path)
    assert found is not None and found.memory == memory
    assert found.procs == pids / "cgroup.procs" and found.peak_memory() == 8949760


def test_a_container_under_another_parent_is_found_from_its_process(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    memory = v1_group(root, "memory", f"process_api/2bbd/algohost-faults/{CID}")
    pids = v1_group(root, "pids", f"algohost-faults/{CID}")
    (proc / "12124").mkdir(parents=True)
    (proc / "12124" / "cgroup").write_text(
        f"8:pids:/algohost-faults/{CID}\n"
        f"4:memory:/process_api/2bbd/algohost-faults/{CID}\n"
        f"0::/algohost-faults/{CID}\n")
    found = ContainerCgroup.find(CID, root=root, pid=lambda: 12124, proc=proc)
    assert found is not None and found.memory == memory and not found.v2
    assert found.procs == pids / "cgroup.procs"


def test_a_cgroup_v2_container_is_found_from_its_process(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    group = root / "algohost-faults" / CID
    group.mkdir(parents=True)
    (group / "memory.current").write_text("100\n")
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "cgroup").write_text(f"0::/algohost-faults/{CID}\n")
    found = ContainerCgroup.find(CID, root=root, pid=lambda: 7, proc=proc)
    assert found is not None and found.v2 and found.memory == group


def test_nothing_visible_is_none(tmp_path: Path) -> None:
    assert ContainerCgroup.find(CID, root=tmp_path) is None
    assert ContainerCgroup.find(CID, root=tmp_path, pid=lambda: 1, proc=tmp_path) is None
