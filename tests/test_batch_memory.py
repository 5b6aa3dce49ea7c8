"""MEASURES peak worker memory: a 200 MB CSV is scored in chunks, and what reading and scoring
add to a worker's resident memory (peak minus after the model loaded) stays well under the
file's size. The figures are printed (run with -s to see them)."""

from __future__ import annotations

import numpy as np
import pytest

from deploystudio.deployment.batch.jobs import (
    BatchSettings,
    JobState,
    start_batch_job,
    wait_for_batch_job,
)

FILE_MB = 200
GROWTH_BOUND_MB = FILE_MB / 4  # measured: about 27 MB, as for a 20 MB file
HEADER = b"sepal_length,sepal_width,petal_length,petal_width\n"


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory):
    """About 200 MB of iris-like rows: one random block, repeated (fast to write)."""
    path = tmp_path_factory.mktemp("batch-memory") / "big.csv"
    rng = np.random.default_rng(0)
    block = (
        "\n".join(
            ",".join(f"{v:.6f}" for v in row) for row in rng.uniform(0.1, 7.9, (20_000, 4))
        ).encode()
        + b"\n"
    )
    repeats = FILE_MB * 2**20 // len(block) + 1
    with path.open("wb") as handle:
        handle.write(HEADER)
        for _ in range(repeats):
            handle.write(block)
    return path, repeats * 20_000


def test_peak_rss_of_a_200mb_csv_is_bounded_by_the_chunk_not_the_file(
    settings, seeded, big_csv, tmp_path
):
    path, rows = big_csv
    size_mb = path.stat().st_size / 2**20
    options = BatchSettings(chunk_rows=50_000, output_action="summary_only", timeout=600)
    job = start_batch_job(
        settings, "models:/iris-classifier/2", path, batch_settings=options,
        output_dir=tmp_path, restrict_input=False,
    )  # fmt: skip
    job = wait_for_batch_job(settings, job.id, timeout_seconds=300)
    assert job.state is JobState.COMPLETED, job.reason
    assert job.rows_done == rows
    memory = job.summary["worker_memory"]
    print(
        f"\n{size_mb:.0f} MB CSV, {rows:,} rows in {job.summary['seconds']:.1f} s: worker RSS "
        f"{memory['after_load_mb']} MB after load, peak {memory['peak_mb']} MB, "
        f"growth {memory['growth_mb']} MB"
    )
    assert size_mb >= FILE_MB
    assert 0 < memory["growth_mb"] < GROWTH_BOUND_MB
    assert not (tmp_path / "predictions.csv").exists()  # summary_only writes no predictions
