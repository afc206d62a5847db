"""Dask clusters: in process, an embedded LocalCluster, an existing scheduler, or SLURM.

GPU workers carry the resource ``GPU: 1`` so GPU tasks go only where a GPU is.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from tiling.errors import InputError
from wsi_pipeline.config import ClusterConfig, SlurmConfig

log = logging.getLogger(__name__)


#: one BLAS/OpenMP thread per worker process (the workers are the parallelism)
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
#: glibc keeps arrays up to 64 MiB on its heap and trims it above 128 MiB (see make_client)
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 64 << 20, "MALLOC_TRIM_THRESHOLD_": 128 << 20}


def cpu_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover
        return 0


def slurm_cluster_kwargs(cfg: SlurmConfig, *, memory_limit: str | None = None) -> dict:
    """Keyword arguments for ``dask_jobqueue.SLURMCluster`` (one worker process per job)."""
    directives = list(cfg.job_extra_directives)
    if cfg.gpus_per_job:
        directives.append(f"--gres=gpu:{cfg.gpus_per_job}")
    kwargs: dict = {
        "cores": cfg.cores,
        "processes": 1,
        "memory": cfg.memory,
        "walltime": cfg.walltime,
        "job_extra_directives": directives,
    }
    if cfg.queue:
        kwargs["queue"] = cfg.queue
    if cfg.account:
        kwargs["account"] = cfg.account
    if cfg.gpus_per_job:
        kwargs["worker_extra_args"] = ["--resources", f"GPU={cfg.gpus_per_job}"]
    return kwargs


def quiet_dask_logs() -> None:
    """Dask's scheduler and nannies log every start, connection and close at INFO (about 30
    lines a run, a dashboard link and a tip to install jupyter-server-proxy among them); a run
    shows them only at ``-vv``. Called after ``distributed`` is imported, which sets its
    loggers' levels itself."""
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("distributed").setLevel(logging.INFO if debug else logging.WARNING)


@contextlib.contextmanager
def make_client(cfg: ClusterConfig, *, scheduler_address: str | None = None,
                connect_timeout: str = "20s") -> Iterator[object | None]:
    """Yield a ``distributed.Client`` (or ``None`` for in-process runs) and close it after."""
    address = scheduler_address or cfg.scheduler_address
    kind = "scheduler" if address else cfg.kind
    if kind == "inprocess":
        yield None
        return
    from distributed import Client

    quiet_dask_logs()
    if kind == "scheduler":
        if not address:
            raise InputError(None, "cluster kind 'scheduler' needs an address: --scheduler tcp://host:8786")
        try:
            client = Client(address, timeout=connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise InputError(None, f"cannot reach the Dask scheduler at {address} ({exc})") from None
        with client:
            yield client
        return
    if kind == "slurm":
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise InputError(None, "cluster kind 'slurm' needs dask-jobqueue: pip install dask-jobqueue") from None
        cluster = SLURMCluster(**slurm_cluster_kwargs(cfg.slurm))
        cluster.scale(jobs=cfg.slurm.jobs)
        with cluster, Client(cluster) as client:
            yield client
        return
    from distributed import LocalCluster

    import dask

    # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=64 KiB in its workers; any explicit malloc
    # threshold switches off glibc's dynamic mmap threshold, so every array over 128 KiB
    # was mmap-ed and zero-filled afresh: on the 10 mm² benchmark excision the workers spent
    # 50 s in the kernel against 100 s of work (nuclei stage 69 s; with these 47 s).
    dask.config.set({"distributed.nanny.pre-spawn-environ": {**WORKER_ENVIRON,
                     **dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_MALLOC}})
    gpus = gpu_count()
    resources = {"GPU": 1} if gpus else None
    workers = cfg.workers or max(1, cpu_cores() // cfg.threads_per_worker)
    n_workers = min(workers, gpus) if gpus else workers
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=cfg.threads_per_worker,
        processes=True,
        memory_limit=cfg.memory_limit,
        dashboard_address=":0",  # a free port: never collides with another cluster on 8787
        resources=resources,
    )
    log.info("LocalCluster with %d worker(s)%s; dashboard %s", n_workers, " carrying GPU: 1" if gpus else "",
             cluster.dashboard_link)
    with cluster, Client(cluster) as client:
        yield client
