"""A model's address in the page URL: ?model=NAME&version=N, ?model=NAME&alias=A or ?uri=..."""

from __future__ import annotations

import streamlit as st

from deploystudio.errors import DeployStudioError
from deploystudio.model_uri import ModelUriKind, parse_model_uri

# The model last chosen on any page of this session, as its address: a page opened from the
# sidebar (which drops the address) starts from it instead of from nothing.
CHOSEN_MODEL = "chosen_model"
ADDRESS_KEYS = ("model", "version", "alias")


def remember_model(params: dict[str, str]) -> None:
    """Keep the model `params` address (model with version or alias) for the session's other
    pages."""
    if params.get("model"):
        st.session_state[CHOSEN_MODEL] = {k: params[k] for k in ADDRESS_KEYS if params.get(k)}


def address_or_remembered() -> None:
    """Put the session's last model in an address that names none (and no other model URI)."""
    params = st.query_params
    remembered = st.session_state.get(CHOSEN_MODEL)
    if remembered and not params.get("model") and not params.get("uri"):
        params.update(remembered)


def uri_from_query_params() -> str:
    address_or_remembered()
    params = st.query_params
    if params.get("uri"):
        return params["uri"]
    if params.get("model") and params.get("version"):
        return f"models:/{params['model']}/{params['version']}"
    if params.get("model") and params.get("alias"):
        return f"models:/{params['model']}@{params['alias']}"
    return ""


def set_query_params_for(uri: str) -> None:
    """Keep the address shareable: a registered version becomes ?model=...&version=..."""
    st.query_params.from_dict(query_params_for(uri))


def query_params_for(uri: str) -> dict[str, str]:
    """The query parameters that address `uri` on another page (for st.page_link)."""
    reference = parse_model_uri(uri)
    if reference.kind is ModelUriKind.REGISTERED_VERSION:
        return {"model": reference.name, "version": str(reference.version)}
    if reference.kind is ModelUriKind.REGISTERED_ALIAS:
        return {"model": reference.name, "alias": reference.alias}
    return {"uri": reference.uri}


URI_PLACEHOLDER = "models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH or a model folder"


def model_uri_input(empty_hint: str) -> str:
    """The "Model URI" field, filled from the address and written back to it; the page stops
    with `empty_hint` while it is empty, or with the reason when the URI is malformed."""
    current = uri_from_query_params()
    entered = st.text_input("Model URI", value=current, placeholder=URI_PLACEHOLDER)
    if not entered:
        st.info(empty_hint)
        st.stop()
    if entered != current:
        try:
            set_query_params_for(entered)
        except DeployStudioError as exc:
            st.error(str(exc))
            st.stop()
    remember_model(st.query_params.to_dict())
    return entered
