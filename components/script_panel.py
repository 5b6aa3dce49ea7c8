"""Customize, way B: a scoring script and its environment, edited, validated in the real Azure
ML inference server, and saved as a versioned bundle."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from components import access, services
from components.script_editor import MarkedFailure, render_script_editor, replace_script
from deploystudio.access import Action
from deploystudio.customization.bundles import Bundle, BundleStore, attach_bundle, bundle_zip
from deploystudio.customization.scoring_script import (
    TEMPLATE_DESCRIPTIONS,
    ScriptTemplate,
    ValidationResult,
    available_templates,
    example_request,
    generate_scoring_script,
    validate_batch_script,
    validate_scoring_script,
)
from deploystudio.customization.script_environment import (
    EnvironmentSpec,
    generate_environment,
    validate_environment,
)
from deploystudio.errors import DeployStudioError
from deploystudio.inspection import ModelInspection
from deploystudio.times import format_time

VALIDATION_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class ValidatedScript:
    """The outcome of the last validation, and the exact script text it validated."""

    script: str
    result: ValidationResult


def default_request_text(model_path: Path) -> str:
    """The validation request: the input example as an Azure body, else a shape to fill in."""
    try:
        return json.dumps(example_request(model_path), indent=2)
    except DeployStudioError:
        return json.dumps({"input_data": {"columns": ["a", "b"], "data": [[1, 2]]}}, indent=2)


def default_bundle_name(inspection: ModelInspection) -> str:
    base = inspection.version.name if inspection.version else "model"
    return f"{base[:24]}-score".strip("-")


def marked_failure(validated: ValidatedScript | None) -> MarkedFailure | None:
    """The line the editor marks: where the last validation failed, if in the script."""
    if validated is None or validated.result.ok or validated.result.error_line is None:
        return None
    return MarkedFailure(validated.script, validated.result.error_line, validated.result.message)


def render_script_panel(inspection: ModelInspection, model_path: Path, key: str) -> None:
    template_key, script_key = f"{key}_template", f"{key}_script"
    conda_key, image_key = f"{key}_conda", f"{key}_image"

    request_key = f"{key}_request"

    def regenerate() -> None:
        template = st.session_state[template_key]
        replace_script(key, script_key, generate_scoring_script(template, model_path))

    if script_key not in st.session_state:
        st.session_state[template_key] = ScriptTemplate.NO_CODE
        regenerate()
        environment = generate_environment(model_path)
        st.session_state[conda_key] = environment.conda_yaml
        st.session_state[image_key] = environment.base_image
        st.session_state[request_key] = default_request_text(model_path)

    st.selectbox(
        "Template",
        available_templates(model_path),
        format_func=lambda t: f"{t.value}: {TEMPLATE_DESCRIPTIONS[t]}",
        key=template_key,
        on_change=regenerate,
        help="Choosing a template replaces the script below.",
    )
    script_column, environment_column = st.columns([3, 2])
    with script_column:
        failure = marked_failure(st.session_state.get(f"{key}_validation"))
        script = render_script_editor(key, script_key, failure)
    with environment_column:
        conda_yaml = st.text_area("conda.yaml", key=conda_key, height=420)
        image = st.text_input("Base image", key=image_key)
        environment = EnvironmentSpec(conda_yaml=conda_yaml, base_image=image)
        for problem in validate_environment(environment):
            st.warning(problem)

    template = ScriptTemplate(st.session_state[template_key])
    if template is not ScriptTemplate.BATCH:
        st.text_area(
            "Request sent to /score when validating",
            key=request_key,
            height=160,
            help="The model's input example as an Azure ML input_data body, when it has one.",
        )
    validated = _render_validation(inspection, model_path, script, template, key)
    _render_save(inspection, script, environment, template, validated, key)


def _render_validation(
    inspection: ModelInspection,
    model_path: Path,
    script: str,
    template: ScriptTemplate,
    key: str,
) -> ValidatedScript | None:
    result_key = f"{key}_validation"
    what = "in a Python process" if template is ScriptTemplate.BATCH else "in azmlinfsrv"
    if st.button(
        f"Validate {what} on 127.0.0.1", icon=":material/fact_check:", key=f"{key}_validate"
    ):
        st.session_state.pop(result_key, None)
        try:
            with st.status("Validating the script…", expanded=True) as status:
                result = _validate(inspection, model_path, script, template, key, status.write)
                status.update(
                    label="Validated" if result.ok else f"Failed at: {result.stage}",
                    state="complete" if result.ok else "error",
                    expanded=False,
                )
            st.session_state[result_key] = ValidatedScript(script, result)
        except DeployStudioError as exc:
            st.error(str(exc))
        else:
            if result.error_line is not None:
                # Drawn again so that the editor above marks the line (it was drawn before the
                # validation ran); the outcome below is shown from session state.
                st.rerun()
    validated: ValidatedScript | None = st.session_state.get(result_key)
    if validated is None:
        return None
    result = validated.result
    if validated.script != script:
        st.info("The script changed since it was validated: validate it again.")
    if result.ok:
        st.success(f"{result.message} ({result.seconds:.1f} s)")
    else:
        st.error(result.message)
    if result.response is not None:
        st.markdown("Response" + (f" (HTTP {result.status_code})" if result.status_code else ""))
        if isinstance(result.response, dict | list):
            st.json(result.response, expanded=2)
        else:
            st.code(str(result.response))
    if result.log_tail:
        with st.expander("Server log (last lines)", icon=":material/terminal:"):
            st.code(result.log_tail, language="text")
    return validated


def _validate(
    inspection: ModelInspection,
    model_path: Path,
    script: str,
    template: ScriptTemplate,
    key: str,
    progress: Callable[[str], None],
) -> ValidationResult:
    work_dir = services.customize_work_dir()
    if template is ScriptTemplate.BATCH:
        example = inspection.input_example
        if not isinstance(example, pd.DataFrame):
            raise DeployStudioError(
                "The batch variant is checked on the model's input example as a CSV file, and "
                "this model has no tabular input example."
            )
        progress("Running init() and run() on the input example saved as a CSV file…")
        return validate_batch_script(
            script, model_path, example, work_dir, timeout_seconds=VALIDATION_TIMEOUT_SECONDS
        )
    return validate_scoring_script(
        script,
        model_path,
        st.session_state[f"{key}_request"],
        work_dir,
        timeout_seconds=VALIDATION_TIMEOUT_SECONDS,
        progress=progress,
    )


def _render_save(
    inspection: ModelInspection,
    script: str,
    environment: EnvironmentSpec,
    template: ScriptTemplate,
    validated: ValidatedScript | None,
    key: str,
) -> None:
    st.markdown("#### Save as a bundle")
    store = BundleStore(services.get_settings().home / "bundles")
    left, right = st.columns([2, 3])
    name = left.text_input(
        "Bundle name",
        value=default_bundle_name(inspection),
        key=f"{key}_bundle_name",
        help="3-32 characters: letters, digits and single dashes, starting with a letter.",
    )
    note = right.text_input("Note (optional)", key=f"{key}_bundle_note")
    passed = validated is not None and validated.result.ok and validated.script == script
    # Attaching is offered ticked only for a script that passed: an attached bundle is what
    # Deploy, Batch and Azure ML offer for the version.
    attach = inspection.version is not None and st.checkbox(
        f"Attach to {inspection.version.name} version {inspection.version.version}",
        value=passed,
        key=f"{key}_attach__{'validated' if passed else 'not_validated'}",
        help="Sets the version's deploystudio.scoring_bundle tag to this bundle."
        + ("" if passed else " The script has not passed validation in this form."),
    )
    saved_key = f"{key}_saved"
    copy = _identical_bundle(store, name.strip(), script, environment, inspection.resolved_uri)
    confirmed = True
    if copy is not None:
        st.info(
            f"Bundle {copy.label} already holds this script, environment and model: saving "
            "again only adds an identical version.",
            icon=":material/content_copy:",
        )
        confirmed = st.checkbox(
            "Save another identical version anyway",
            value=False,
            key=f"{key}_save_copy__{copy.label}",
        )
    if st.button(
        "Save bundle",
        icon=":material/save:",
        key=f"{key}_save",
        **access.button_args(Action.CUSTOMIZE, disabled=not confirmed),
    ) and access.permitted(Action.CUSTOMIZE) and confirmed:  # fmt: skip
        st.session_state.pop(saved_key, None)
        try:
            bundle = store.save(
                name.strip(),
                script,
                environment,
                inspection.resolved_uri,
                template.value,
                note=note,
                validated=passed,
                saved_by=services.current_actor(),
            )
            if attach:
                attach_bundle(services.registry(), bundle, inspection.resolved_uri)
                services.refresh_registry_listings()
            st.session_state[saved_key] = (
                f"Saved bundle **{bundle.name}** version **{bundle.version}**"
                + (" and attached it." if attach else ".")
                + ("" if passed else " It has not passed validation in this form.")
            )
        except DeployStudioError as exc:
            st.error(str(exc))
        else:
            # Drawn again from the store: the button now sees the version just saved.
            st.rerun()
    if saved_key in st.session_state:
        st.success(st.session_state[saved_key])
    _render_bundles(store, inspection.resolved_uri, key)


def _identical_bundle(
    store: BundleStore, name: str, script: str, environment: EnvironmentSpec, model_uri: str
) -> Bundle | None:
    try:
        return store.identical(name, script, environment, model_uri)
    except DeployStudioError:  # a name the rule refuses: saving says why
        return None


def _render_bundles(store: BundleStore, model_uri: str, key: str) -> None:
    bundles = [b for b in store.list_bundles() if b.model_uri == model_uri]
    if not bundles:
        return
    st.markdown("#### Bundles for this model")
    st.dataframe(
        pd.DataFrame(
            {
                "bundle": [b.name for b in bundles],
                "version": [b.version for b in bundles],
                "template": [b.template for b in bundles],
                "validated": [b.validated for b in bundles],
                "created": [format_time(b.created_at) for b in bundles],
                "saved by": [b.saved_by for b in bundles],
                "note": [b.note for b in bundles],
            }
        ),
        hide_index=True,
    )
    chosen: Bundle = st.selectbox(
        "Download",
        bundles,
        format_func=lambda b: f"{b.name} version {b.version}",
        key=f"{key}_download_choice",
    )
    st.download_button(
        "Download zip (score.py, conda.yaml, Azure deployment.yml)",
        data=lambda: bundle_zip(chosen),
        file_name=f"{chosen.name}-v{chosen.version}.zip",
        mime="application/zip",
        icon=":material/download:",
        key=f"{key}_download",
    )
