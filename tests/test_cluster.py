import pytest

from tiling.errors import InputError
from wsi_pipeline.cluster import make_client, slurm_cluster_kwargs
from wsi_pipeline.config import ClusterConfig, SlurmConfig


def test_inprocess_gives_no_client():
    with make_client(ClusterConfig(kind="inprocess")) as client:
        assert client is None


def test_unreachable_scheduler_is_one_clear_error():
    with pytest.raises(InputError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        with make_client(ClusterConfig(), scheduler_address="tcp://127.0.0.1:9", connect_timeout="2s"):
            pass


def test_slurm_job_script_carries_the_configuration():
    jobqueue = pytest.importorskip("dask_jobqueue")
    cfg = SlurmConfig(queue="gpu", account="derm", cores=8, memory="32GB", walltime="10:00:00", jobs=3,
                      gpus_per_job=1, job_extra_directives=("--constraint=a100",))
    kwargs = slurm_cluster_kwargs(cfg)
    with jobqueue.SLURMCluster(**kwargs) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p gpu" in script
    assert "#SBATCH -A derm" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH -t 10:00:00" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --constraint=a100" in script
    assert "--resources GPU=1" in script
    assert "--nthreads 8" in script


def test_local_workers_one_per_core_with_heap_friendly_malloc():
    """Default: a worker per core; each worker keeps BLAS at one thread and glibc's mmap
    threshold at 64 MiB (Dask's own 64 KiB trim setting made workers page-fault ~1/3 of the time)."""
    import os

    from wsi_pipeline.cluster import WORKER_MALLOC, cpu_cores, make_client
    from wsi_pipeline.config import ClusterConfig

    assert ClusterConfig().workers == 0 and cpu_cores() >= 1

    def env():
        return {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}

    with make_client(ClusterConfig(kind="local", workers=1, memory_limit="2GB")) as client:
        got = list(client.run(env).values())
    assert got == [{"MALLOC_MMAP_THRESHOLD_": str(WORKER_MALLOC["MALLOC_MMAP_THRESHOLD_"]),
                    "MALLOC_TRIM_THRESHOLD_": str(WORKER_MALLOC["MALLOC_TRIM_THRESHOLD_"]), "OMP_NUM_THREADS": "1"}]


def test_dask_start_up_chatter_only_at_debug():
    """Dask logs ~30 INFO lines per run (scheduler, nannies, connections, a dashboard tip);
    a run shows them only with -vv: its loggers sit at WARNING below DEBUG."""
    import logging

    from wsi_pipeline.cluster import quiet_dask_logs

    root = logging.getLogger()
    saved = root.level, logging.getLogger("distributed").level
    try:
        for level, expected in ((logging.WARNING, logging.WARNING), (logging.INFO, logging.WARNING),
                                (logging.DEBUG, logging.INFO)):
            root.setLevel(level)
            logging.getLogger("distributed").setLevel(logging.INFO)  # as importing distributed leaves it
            quiet_dask_logs()
            assert logging.getLogger("distributed").getEffectiveLevel() == expected
            assert logging.getLogger("distributed.scheduler").getEffectiveLevel() == expected
    finally:
        root.setLevel(saved[0])
        logging.getLogger("distributed").setLevel(saved[1])
