"""Batch: score uploaded files or a folder on the server with a model version (optionally a batch
scoring bundle), as an Azure ML batch deployment does; follow the job live; see past jobs.

The address holds the page's state: ?model=&version= the model, ?job= the job shown. A job runs
in a process of its own, so it goes on when the page is closed and shows again from its link.
"""

import streamlit as st

from components import access, services
from components.batch_form import render_bundle, render_input, render_settings, run_fingerprint
from components.batch_history import render_past_jobs
from components.batch_job import render_job
from components.deploy_form import render_model_choice
from components.environment_choice import environment_status, render_env_mode
from deploystudio.access import Action
from deploystudio.customization.bundles import bundle_store
from deploystudio.deployment.actors import acting_as
from deploystudio.deployment.batch.jobs import start_batch_job
from deploystudio.deployment.batch.uploads import save_uploads
from deploystudio.errors import DeployStudioError

# This session's last start: (its request's fingerprint, the job's id).
LAST_START_KEY, ASKING_KEY = "batch_last_start", "batch_asking_again"

settings = services.get_settings()
st.title("Batch scoring")
# Filled in this order on screen, but the form is drawn last: it stops the page until a model
# is chosen, and the job and the past jobs must show without one.
job_area, form_area, past_area = st.container(), st.container(), st.container()

with past_area:
    st.divider()
    st.markdown("#### Past jobs")
    render_past_jobs(settings)

shown_job = st.query_params.get("job")
if shown_job:
    with job_area:
        render_job(settings, shown_job)
        st.divider()

with form_area:
    st.markdown("#### New job")
    choice = render_model_choice("batch")
    bundle = render_bundle(choice, bundle_store(settings))
    source = render_input(settings)
    batch_settings = render_settings()
    env_mode = render_env_mode("batch_env")
    ready = source is not None and batch_settings is not None
    clicked = st.button("Run", type="primary", icon=":material/play_arrow:", key="batch_run",
                        **access.button_args(Action.BATCH, disabled=not ready),
                        ) and ready and access.permitted(Action.BATCH)  # fmt: skip
    request = run_fingerprint(choice.uri, bundle, source, batch_settings, env_mode) if ready else ""
    # A second click on Run (a double click reaches the server as two runs) would start the same
    # job twice: the same request as this session's last start asks first.
    last_request, last_job = st.session_state.get(LAST_START_KEY, ("", ""))
    again = False
    if request != last_request:
        st.session_state.pop(ASKING_KEY, None)
    elif ready and (clicked or st.session_state.get(ASKING_KEY)):
        st.session_state[ASKING_KEY] = True
        st.warning(
            f"You started this job already (job `{last_job}`): the same model, "
            "input and settings. Run it again?",
            icon=":material/content_copy:",
        )
        again = st.button(
            "Run it again", key="batch_run_again", **access.button_args(Action.BATCH)
        ) and access.permitted(Action.BATCH)
        clicked = False
    if clicked or again:
        st.session_state.pop(ASKING_KEY, None)
        try:
            if source.uploads:
                input_path = save_uploads(
                    settings, [(f.name, f.getvalue()) for f in source.uploads]
                )
            else:
                input_path = source.folder
            # The job's record and its audit entry name the user who started it.
            with (
                acting_as(services.current_actor()),
                environment_status(env_mode, "The job could not start") as progress,
            ):
                job = start_batch_job(
                    settings,
                    choice.uri,
                    input_path,
                    batch_settings=batch_settings,
                    bundle=bundle,
                    # Uploads sit in a folder the page itself made in the data folder, which need
                    # not be one of the configured roots; a typed path must be inside them.
                    restrict_input=not source.uploads,
                    registry=services.registry(),
                    env=env_mode,
                    progress=progress,
                )
                # Kept before anything more is drawn (the status box closing draws): a second
                # click's rerun stops this run only where it draws, so the start is never lost.
                st.session_state[LAST_START_KEY] = (request, job.id)
        except DeployStudioError as exc:
            st.error(str(exc))
        else:
            st.query_params["job"] = job.id
            st.rerun()
