"""A model's address in the page URL: ?model=NAME&version=N, ?model=NAME&alias=A or ?uri=..."""

from __future__ import annotations

import streamlit as st

from deploystudio.model_uri import ModelUriKind, parse_model_uri


def uri_from_query_params() -> str:
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
    reference = parse_model_uri(uri)
    if reference.kind is ModelUriKind.REGISTERED_VERSION:
        st.query_params.from_dict({"model": reference.name, "version": reference.version})
    elif reference.kind is ModelUriKind.REGISTERED_ALIAS:
        st.query_params.from_dict({"model": reference.name, "alias": reference.alias})
    else:
        st.query_params.from_dict({"uri": reference.uri})


def query_params_for(uri: str) -> dict[str, str]:
    """The query parameters that address `uri` on another page (for st.page_link)."""
    reference = parse_model_uri(uri)
    if reference.kind is ModelUriKind.REGISTERED_VERSION:
        return {"model": reference.name, "version": str(reference.version)}
    if reference.kind is ModelUriKind.REGISTERED_ALIAS:
        return {"model": reference.name, "alias": reference.alias}
    return {"uri": reference.uri}
