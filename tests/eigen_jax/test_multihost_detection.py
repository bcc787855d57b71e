"""`multihost.initialize` under a launcher's environment (SLURM, a TPU VM slice): with no flags it
leaves every argument to jax's own cluster detection, and explicit flags win over the environment.

`jax.distributed.initialize` is replaced by a recorder (nothing connects); what it received is
then resolved by jax's detection (`ClusterEnv.auto_detect_unset_distributed_params`, what the real
`initialize` calls) and compared with values worked out by hand from the variables.
"""

import jax
import pytest
from jax._src import clusters
from jax._src.clusters import cloud_tpu_cluster

from eigen_jax import multihost

SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "gpu[017-020],gpu030",
    "SLURM_NTASKS": "4",
    "SLURM_PROCID": "2",
    "SLURM_LOCALID": "0",
    "SLURM_STEP_NUM_NODES": "4",
}
# jax's SLURM port: the job id mapped into [61440, 65535]; the first host of the node list.
SLURM_COORDINATOR = f"gpu017:{4242 % 4096 + 61440}"

# Every variable any of jax's cluster types looks at, cleared so only the test's are present.
_CLUSTER_VARS = (
    *multihost.AUTO_DETECT_ENV,
    *SLURM,
    "JAX_COORDINATOR_PORT",
    "JAX_LOCAL_DEVICE_IDS",
    "TPU_PROCESS_ADDRESSES",
    "TPU_WORKER_ID",
    "TPU_SKIP_MDS_QUERY",
    "MEGASCALE_NUM_SLICES",
    "MEGASCALE_SLICE_ID",
    "OMPI_MCA_orte_hnp_uri",
    "PMIX_RANK",
    "KUBERNETES_SERVICE_HOST",
)


@pytest.fixture
def recorded(monkeypatch):
    """Calls to `jax.distributed.initialize` (kwargs), with a clean launcher environment."""
    for var in _CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    collectives = jax.config.jax_cpu_collectives_implementation
    yield calls
    jax.config.update("jax_cpu_collectives_implementation", collectives)


def resolved(call) -> tuple:
    """What jax's `initialize` would connect with, given the arguments it was passed."""
    args, kw = call
    assert not args, "multihost.initialize passes keywords only"
    return tuple(
        clusters.ClusterEnv.auto_detect_unset_distributed_params(
            kw.get("coordinator_address"),
            kw.get("num_processes"),
            kw.get("process_id"),
            kw.get("local_device_ids"),
            None,
            10,
        )
    )


def test_slurm_environment_alone_is_left_to_jax_detection(recorded, monkeypatch):
    for k, v in SLURM.items():
        monkeypatch.setenv(k, v)
    assert multihost.initialize() is False  # the recorder starts no second process
    assert len(recorded) == 1 and recorded[0] == ((), {})
    assert resolved(recorded[0]) == (SLURM_COORDINATOR, 4, 2, [0])


def test_explicit_flags_win_over_slurm(recorded, monkeypatch):
    for k, v in SLURM.items():
        monkeypatch.setenv(k, v)
    multihost.initialize("10.1.2.3:1234", 8, 5)
    multihost.initialize(process_id=3)  # one flag: the rest still come from SLURM
    assert [kw for _, kw in recorded] == [
        {"coordinator_address": "10.1.2.3:1234", "num_processes": 8, "process_id": 5},
        {"process_id": 3},
    ]
    assert resolved(recorded[0]) == ("10.1.2.3:1234", 8, 5, [0])
    assert resolved(recorded[1]) == (SLURM_COORDINATOR, 4, 3, [0])


def test_tpu_vm_slice_environment_is_left_to_jax_detection(recorded, monkeypatch):
    """A TPU slice on GKE/queued resources names its workers in `TPU_WORKER_HOSTNAMES`; this VM
    is not a TPU VM, so jax's TPU-VM check is patched on, and the metadata server is skipped."""
    monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
    monkeypatch.setattr(clusters.cluster, "running_in_cloud_tpu_vm", True, raising=False)
    for k, v in {
        "TPU_WORKER_HOSTNAMES": "127.0.0.1,127.0.0.2",
        "TPU_WORKER_ID": "1",
        "TPU_SKIP_MDS_QUERY": "1",
        "MEGASCALE_COORDINATOR_ADDRESS": "",
        "MEGASCALE_NUM_SLICES": "1",
        "MEGASCALE_SLICE_ID": "0",
    }.items():
        monkeypatch.setenv(k, v)
    multihost.initialize()
    multihost.initialize(num_processes=2, process_id=0, coordinator_address="10.0.0.9:99")
    assert [kw for _, kw in recorded] == [
        {},
        {"coordinator_address": "10.0.0.9:99", "num_processes": 2, "process_id": 0},
    ]
    # jax's TPU port 8482 on worker 0; TPUs never get local_device_ids
    assert resolved(recorded[0]) == ("127.0.0.1:8482", 2, 1, None)
    assert resolved(recorded[1]) == ("10.0.0.9:99", 2, 0, None)


def test_no_launcher_and_no_flags_is_a_single_process_run(recorded):
    assert multihost.initialize() is False and recorded == []
    assert multihost.initialize(num_processes=1) is False and recorded == []
