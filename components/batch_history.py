"""The Batch page's list of past jobs, each linking to its own view (`?job=ID`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from deploystudio.config import Settings
from deploystudio.deployment.batch.jobs import list_batch_jobs
from deploystudio.deployment.batch.records import BatchJob
from deploystudio.times import format_time

PAST_JOBS_SHOWN = 50


def job_seconds(job: BatchJob) -> float | None:
    """Seconds the job ran (so far, while it runs); None before it started."""
    if job.started_at is None:
        return None
    end = job.finished_at or datetime.now(UTC)
    return max(0.0, (end - job.started_at).total_seconds())


def jobs_frame(jobs: list[BatchJob]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            # Relative to the page's own address, so it works under any base URL path.
            "job": [f"batch?job={job.id}" for job in jobs],
            "state": [job.state.value for job in jobs],
            "model": [job.model_uri + (f" + {job.bundle}" if job.bundle else "") for job in jobs],
            "files": [f"{job.files_done}/{job.files_total}" for job in jobs],
            "failed": [job.files_failed for job in jobs],
            "rows": [job.rows_done for job in jobs],
            "started": [format_time(job.started_at or job.created_at) for job in jobs],
            "seconds": [job_seconds(job) for job in jobs],
        }
    )


def render_past_jobs(settings: Settings) -> None:
    jobs = list_batch_jobs(settings, limit=PAST_JOBS_SHOWN)
    if not jobs:
        st.caption("No batch jobs yet.")
        return
    st.dataframe(
        jobs_frame(jobs),
        hide_index=True,
        column_config={
            "job": st.column_config.LinkColumn("job", display_text=r"batch\?job=(.*)"),
            "seconds": st.column_config.NumberColumn("duration (s)", format="%.1f"),
        },
        key="batch_past_jobs",
    )
