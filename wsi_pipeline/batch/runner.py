"""The overnight batch: every slide processed, one bad slide never stops the rest.

A rerun skips slides whose done marker matches the input checksum and the config hash,
and redoes partial ones. The report is rewritten after every slide.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from tiling.errors import InputError
from wsi_pipeline.batch.manifest import SlideJob, read_jobs
from wsi_pipeline.batch.markers import file_checksum, is_complete
from wsi_pipeline.batch.report import SlideRow, write_reports
from wsi_pipeline.config import PipelineConfig

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    rows: list[SlideRow]
    out_dir: Path

    @property
    def failed(self) -> list[SlideRow]:
        return [r for r in self.rows if r.status == "failed"]


def one_line(exc: BaseException) -> str:
    """A user-facing single line for any error."""
    if isinstance(exc, InputError):
        return str(exc)
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:500]


def _counts_from_summary(slide_dir: Path) -> dict:
    try:
        return json.loads((slide_dir / "summary.json").read_text()).get("counts", {})
    except (OSError, ValueError):
        return {}


def _clean_partials(out_dir: Path) -> None:
    for p in out_dir.glob(".*.partial"):
        log.info("removing partial output %s from an interrupted run", p.name)
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _batch_log(out_dir: Path) -> Iterator[None]:
    """``OUT/batch.log`` gets INFO (each slide started, done with its counts, failed) whatever
    the console shows: the console handlers keep the level the command line asked for
    (WARNING unless -v), so the terminal shows the progress bars, warnings and errors."""
    handler = logging.FileHandler(out_dir / "batch.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    level = root.level
    console = [h for h in root.handlers if h.level == logging.NOTSET]
    for h in console:
        h.setLevel(level)
    root.addHandler(handler)
    if level > logging.INFO or level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        for h in console:
            h.setLevel(logging.NOTSET)


def scrub(text: str, job: SlideJob) -> str:
    """``text`` with the slide's file path and name replaced by its id: what a de-identified
    batch writes about a failed slide (a file name is where patient names end up)."""
    path = Path(job.path)
    for part in sorted({str(path.resolve()), str(path), path.name, path.stem}, key=len, reverse=True):
        if len(part) >= 3:
            text = text.replace(part, job.slide_id)
    return text


def _process(job: SlideJob, out_dir: Path, cfg: PipelineConfig, client, bar, *, deidentify: bool = False) -> SlideRow:
    from wsi_pipeline.run import counts_line, run_slide

    t0 = time.perf_counter()
    slide_dir = out_dir / job.slide_id
    try:
        if not Path(job.path).exists():
            raise InputError(job.path, "no such file")
        checksum = file_checksum(Path(job.path))
        if is_complete(slide_dir, checksum=checksum, config_hash=cfg.hash()):
            log.info("%s: already complete, skipped", job.slide_id)
            return SlideRow(job.slide_id, "skipped", 0.0, _counts_from_summary(slide_dir),
                            thumbnail=slide_dir / "overview.png")
        log.info("%s: started", job.slide_id)
        run = run_slide(job, out_dir, cfg, client=client, checksum=checksum, progress=bar)
        secs = time.perf_counter() - t0
        log.info("%s: done in %.1f s (%s)", job.slide_id, secs, counts_line(run.counts))
        return SlideRow(job.slide_id, "done", secs, run.counts, thumbnail=slide_dir / "overview.png")
    except Exception as exc:  # one bad slide never stops the batch
        msg = one_line(exc)
        kept = scrub(msg, job) if deidentify else msg  # what batch.log and the reports keep
        log.error("%s: failed: %s", job.slide_id, kept)
        if not isinstance(exc, InputError):
            trace = traceback.format_exc()
            log.info("%s: traceback\n%s", job.slide_id, scrub(trace, job) if deidentify else trace)
        return SlideRow(job.slide_id, "failed", time.perf_counter() - t0, {}, error=kept, source=str(job.path))


def _concurrent_slides(client, n_jobs: int) -> int:
    """Slides in flight at once: one per Dask worker (at least 1, at most the number of slides)."""
    if client is None:
        return 1
    workers = len(client.scheduler_info().get("workers", {}))
    return max(1, min(workers, n_jobs))


def run_batch(
    source: str | Path,
    out_dir: str | Path,
    cfg: PipelineConfig,
    *,
    scheduler: str | None = None,
    deidentify: bool = False,
    show_progress: bool = True,
    client=None,
) -> BatchResult:
    """Run every slide of a folder or manifest into ``out_dir``; write the reports.

    client : an existing ``distributed.Client`` to use instead of the configured cluster.
    """
    from wsi_pipeline.cluster import make_client

    out_dir = Path(out_dir)
    deidentify = deidentify or cfg.output.deidentify
    jobs = read_jobs(source, deidentify=deidentify)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).strftime("Started %Y-%m-%d %H:%M UTC.")
    done: dict[int, SlideRow] = {}
    lock = threading.Lock()
    with _batch_log(out_dir):
        _clean_partials(out_dir)
        cluster = contextlib.nullcontext(client) if client is not None else make_client(cfg.cluster, scheduler_address=scheduler)
        with cluster as client, \
                tqdm(total=len(jobs), unit="slide", desc="batch", disable=not show_progress, position=0) as overall, \
                tqdm(total=0, unit="tile", leave=False, disable=not show_progress, position=1) as tiles:
            concurrent = _concurrent_slides(client, len(jobs))

            def one(i: int, job: SlideJob) -> None:
                row = _process(job, out_dir, cfg, client, tiles if concurrent == 1 else None, deidentify=deidentify)
                with lock:  # the report grows slide by slide, in manifest order
                    done[i] = row
                    overall.update(1)
                    write_reports(out_dir, [done[k] for k in sorted(done)], started=started)

            if concurrent == 1:
                for i, job in enumerate(jobs):
                    overall.set_postfix_str(job.slide_id)
                    one(i, job)
            else:  # slides across the cluster: while one slide's tiles run, the next is being prepared
                with ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="slide") as pool:
                    for f in [pool.submit(one, i, job) for i, job in enumerate(jobs)]:
                        f.result()
        rows = [done[k] for k in sorted(done)]
        write_reports(out_dir, rows, started=started)
    return BatchResult(rows, out_dir)
