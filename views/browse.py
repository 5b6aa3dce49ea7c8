"""Browse: registered models (of the MLflow registry or an Azure ML workspace, picked at the
top), searchable and paged; one model's versions lead to Inspect."""

import streamlit as st

from components import services
from components.model_address import remember_model
from components.registry_source import AZURE, PICKER_KEY, render_source_picker
from components.tables import models_frame, versions_frame
from deploystudio.errors import DeployStudioError
from deploystudio.overview import served_version, suggest_aliases, suggest_tags, tag_suggestions
from deploystudio.registry import parse_tag_filter

TAG_KEY, ALIAS_KEY = "browse_tag", "browse_alias"


def _set_filter(key: str, value: str) -> None:
    # A callback runs before the widgets of the next run exist: the one moment their state
    # can be set.
    st.session_state[key] = value


def _suggest(label: str, key: str, values: list[str]) -> None:
    """Buttons that put an existing tag or alias in its filter."""
    if not values:
        return
    st.caption(label)
    columns = st.columns(min(len(values), 4))
    for number, value in enumerate(values):
        columns[number % len(columns)].button(
            value, key=f"{key}_suggestion_{number}", on_click=_set_filter, args=(key, value)
        )


st.title("Registered models")
settings = services.get_settings()
source, on_azure = render_source_picker()

search_col, tag_col, alias_col = st.columns([2, 1, 1])
name_query = search_col.text_input("Search by name", placeholder="part of a model name")
# The registry's own tags and aliases for the filters' help, read in the background: it reads
# every model (seconds on a 2,000-model registry), and the table must not wait for a tooltip.
# None until the first read has ended; a registry that does not answer is said once, below.
hints = services.filter_hints(source)
tag_text = tag_col.text_input(
    "Tag",
    placeholder="key=value or key",
    key=TAG_KEY,
    help="Tag keys in the registry: " + ", ".join(hints.tags) if hints and hints.tags else None,
)
alias = alias_col.text_input(
    "Alias",
    placeholder="e.g. champion",
    key=ALIAS_KEY,
    disabled=on_azure,  # Azure ML models have no aliases
    help="Aliases in the registry: " + ", ".join(hints.aliases)
    if hints and hints.aliases
    else None,
)

try:
    tag = parse_tag_filter(tag_text)
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()

# Page tokens of the pages before this one; reset whenever the filters change.
filters = (name_query, tag, alias)
if st.session_state.get("browse_filters") != filters:
    st.session_state.browse_filters = filters
    st.session_state.browse_tokens = [None]
tokens: list = st.session_state.browse_tokens

try:
    # The first listing of a server process also opens the store (seconds): say so.
    with st.spinner("Reading the registry…"):
        page = services.model_page(
            source, name_query, tag, alias, settings.registry_page_size, tokens[-1]
        )
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()

page_number = len(tokens)
if not page.models:
    st.info(
        "No registered models match these filters."
        if any(filters) or page_number > 1
        else "The workspace has no registered models yet."
        if on_azure
        else "The registry has no models yet. Run `deploystudio seed-demo` to add demos."
    )
    # Not a dead end: offer the tags and aliases that do exist, closest first (read now, not
    # from the background hints, which may not have arrived yet).
    facts = services.registry_overview(source) if tag or alias else None
    if tag is not None and facts is not None:
        _suggest(
            "Tags in the registry like this one:",
            TAG_KEY,
            [f"{k}={v}" for k, v in suggest_tags(tag, tag_suggestions(facts.models))],
        )
    if alias and facts is not None:
        _suggest("Aliases in the registry:", ALIAS_KEY, suggest_aliases(alias, facts))
else:
    event = st.dataframe(
        models_frame(page.models),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="models_table",
        column_config={
            "description": st.column_config.TextColumn(width="medium"),
            # Wide enough for a model's four or five tags without cutting them off.
            "tags": st.column_config.TextColumn(width="large"),
        },
    )
    if event.selection.rows:
        st.query_params["model"] = page.models[event.selection.rows[0]].name
        if not on_azure:  # the other pages take MLflow registry models only (for now)
            remember_model({"model": st.query_params["model"]})

previous_col, position_col, next_col = st.columns([1, 2, 1])
if previous_col.button("← Previous", disabled=page_number == 1):
    tokens.pop()
    st.rerun()
position_col.caption(
    f"Page {page_number} · {len(page.models)} model(s)"
    + (f" (alias filter scanned {page.scanned})" if alias else "")
)
if next_col.button("Next →", disabled=page.next_page_token is None):
    tokens.append(page.next_page_token)
    st.rerun()

selected = st.query_params.get("model")
if not selected:
    st.caption("Select a model in the table to see its versions.")
    st.stop()

try:
    model = services.model_summary(source, selected)
    versions = services.model_versions(source, selected)
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()

st.subheader(model.name)
if model.description:
    st.write(model.description)
if model.tags:
    st.markdown(" ".join(f":gray-badge[{k}={v}]" for k, v in sorted(model.tags.items())))
# Which endpoint deployments serve each version (read from the deployment store; they name
# MLflow registry versions).
served = [
    s
    for d in ([] if on_azure else services.local_endpoints().target.list_deployments())
    if (s := served_version(d)) is not None and s.model == model.name
]
st.dataframe(
    versions_frame(versions, served),
    hide_index=True,
)
for version in versions:
    aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
    st.page_link(
        "views/inspect.py",
        label=f"Inspect version {version.version}{aliases}",
        icon=":material/search:",
        query_params={
            "model": model.name,
            "version": version.version,
            **({PICKER_KEY: AZURE} if on_azure else {}),
        },
    )
