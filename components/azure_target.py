"""One AzureTarget per workspace for the whole server (built and cached in
components/services.py, which the Endpoints page's target picker also reaches), and the
operation subject of an Azure endpoint."""

from __future__ import annotations

from components.services import azure_subject as subject
from components.services import azure_target

__all__ = ["azure_target", "subject"]
