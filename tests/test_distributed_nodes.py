"""A node of a real Ray cluster lost mid-task (``ray.cluster_utils.Cluster``: a head and worker
nodes as separate raylets on this machine): the work it held runs again on another node, and the
driver gets every result once."""

from __future__ import annotations

import time
from pathlib import Path


def test_a_node_lost_mid_task_has_its_work_run_again_on_another_node(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from cosearch.distributed.pool import RayPool

    if ray.is_initialized():
        ray.shutdown()
    started = tmp_path / "started"
    started.mkdir()

    def work(i: int, folder: str) -> tuple[int, str]:  # pickled by value: workers need no test module
        import ray as _ray

        node = _ray.get_runtime_context().get_node_id()
        Path(folder, f"{i}-{node}").write_text("")
        time.sleep(4.0)
        return i, node

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no work
    try:
        doomed = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        pool = RayPool(address=cluster.address)
        try:
            pending = [pool.submit(work, i, str(started)) for i in range(2)]
            deadline = time.monotonic() + 120
            while len(list(started.iterdir())) < 2:  # both pieces of work running on the doomed node
                assert time.monotonic() < deadline, "the work never started"
                time.sleep(0.1)
            lost_node = {p.name.split("-", 1)[1] for p in started.iterdir()}
            assert len(lost_node) == 1
            cluster.remove_node(doomed)  # the node's raylet and its workers killed
            cluster.add_node(num_cpus=2)
            results = [p.result() for p in pending]
        finally:
            pool.close()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    assert sorted(i for i, _ in results) == [0, 1]  # every result, once
    assert all(node not in lost_node for _, node in results)  # finished elsewhere
    runs = sorted(p.name.split("-", 1)[0] for p in started.iterdir())
    assert runs.count("0") == 2 and runs.count("1") == 2  # each started on the lost node, then again
