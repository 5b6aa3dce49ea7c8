"""Signature tables: columns or tensors in, outputs, params."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from deploystudio.inspection import ParamField, SchemaField, SignatureInfo


def fields_frame(fields: list[SchemaField], kind: str | None) -> pd.DataFrame:
    if kind == "tensors":
        return pd.DataFrame(
            {
                "name": [f.name or "(unnamed)" for f in fields],
                "dtype": [f.type for f in fields],
                "shape": [str(f.shape) for f in fields],
            }
        )
    return pd.DataFrame(
        {
            "column": [f.name or "(unnamed)" for f in fields],
            "type": [f.type for f in fields],
            "required": ["yes" if f.required else "no" for f in fields],
        }
    )


def params_frame(params: list[ParamField]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "param": [p.name for p in params],
            "type": [p.type for p in params],
            "default": [repr(p.default) for p in params],
            "shape": ["" if p.shape is None else str(p.shape) for p in params],
        }
    )


def render_signature(signature: SignatureInfo | None) -> None:
    if signature is None:
        st.warning(
            "This model has no signature: requests are not checked before they reach the model. "
            "Re-log it with a signature (Customize can do it) to have inputs enforced."
        )
        return
    kind = "tensor-based" if signature.input_kind == "tensors" else "column-based"
    st.markdown(f"**Inputs** ({kind})")
    st.table(fields_frame(signature.inputs, signature.input_kind), hide_index=True)
    st.markdown("**Outputs**")
    if signature.outputs:
        st.table(fields_frame(signature.outputs, signature.output_kind), hide_index=True)
    else:
        st.caption("No output schema.")
    st.markdown("**Params**")
    if signature.params:
        st.table(params_frame(signature.params), hide_index=True)
    else:
        st.caption("No params: the model takes none at predict time.")
