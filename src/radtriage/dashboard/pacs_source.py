"""The dashboard's PACS source (issue 18): list a PACS's recent radiograph studies, open one, write back.

Configured like ``radtriage pacs run`` (:mod:`radtriage.pacs.client`): the DICOMweb root from ``url`` in
the ``[pacs]`` table of ``.streamlit/secrets.toml``, else ``$RADTRIAGE_PACS_URL``; the credentials by the
CLI's rules, from that table's ``user`` / ``password``, ``token`` or ``credentials_file`` keys, else from
the CLI's environment variables. Without a URL the source says so in one sentence.

An opened study's CR/DX images (WADO-RS) become :class:`~radtriage.dashboard.inputs.Item` s named
"image N" and follow the uploads' path (decode -> gate -> model -> results). The write-back button runs
the CLI's job on that one study (:func:`radtriage.pacs.run.run`): the same findings SR and overlay, and
nothing added when the current models' SR is already there. No patient identifier is asked for or shown:
studies appear by date, modality, body part and the CLI's short hashed ID.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from radtriage.dashboard.inputs import Item, ingest
from radtriage.pacs import client, findings, run

URL_ENV = "RADTRIAGE_PACS_URL"
STUDY_KEY, DAYS_KEY = "pacs_study", "pacs_days"
DEFAULT_DAYS, MAX_STUDIES = 30, 50
LIST_TTL = 60  # seconds: a new study on the PACS shows within a minute without hammering QIDO-RS
NOT_CONFIGURED = (f"No PACS is configured: set url (and the credentials) in the [pacs] table of "
                  f".streamlit/secrets.toml, or {URL_ENV} in the environment.")
# [pacs] table keys -> the variables the CLI reads (radtriage.pacs.client)
SECRET_NAMES = {"url": URL_ENV, "user": client.USER_ENV, "password": client.PASSWORD_ENV,
                "token": client.TOKEN_ENV, "credentials_file": client.FILE_ENV}


def settings_env(env: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The environment with the ``[pacs]`` secrets laid over it under the CLI's variable names.

    Args:
        env: the environment (default ``os.environ``).
        secrets: the ``[pacs]`` table (default: read from ``st.secrets``; empty when there is none).
    """
    merged = dict(os.environ if env is None else env)
    table = _secrets_table() if secrets is None else secrets
    merged.update({name: str(table[key]) for key, name in SECRET_NAMES.items() if table.get(key)})
    return merged


def _secrets_table() -> Mapping[str, Any]:
    try:
        return dict(st.secrets.get("pacs", {}))
    except Exception:  # noqa: BLE001 - no or unreadable secrets.toml: Streamlit raises on first access
        return {}


def connect(env: Mapping[str, str]) -> Any | None:
    """A DICOMweb client of the configured PACS, or None when no URL is configured.

    Raises:
        PacsError: a bad URL or bad credentials settings (one sentence).
    """
    url = env.get(URL_ENV, "").strip()
    return client.connect(url, client.credentials_from_env(env)) if url else None


@st.cache_data(ttl=LIST_TTL, show_spinner=False)
def _studies(url: str, since: datetime.date, _dicomweb: Any) -> list[run.StudyEntry]:
    return run.recent_studies(_dicomweb, since=since, limit=MAX_STUDIES)


@st.cache_resource(ttl=600, max_entries=4, show_spinner=False)
def _fetch(url: str, study_uid: str, _dicomweb: Any) -> list[tuple[str, bytes]]:
    # resource cache: the bytes are shared as they are, not copied per rerun
    return run.fetch_study(_dicomweb, study_uid)


def label(entry: run.StudyEntry) -> str:
    """A study as the picker shows it: "2026-03-01 · CR · CHEST · a1b2c3d4e5" (no identifier, no UID)."""
    return " · ".join([entry.date or "no date", "/".join(entry.modalities) or "?",
                       "/".join(entry.body_parts) or "body part not given", entry.id])


def study_table(studies: Sequence[run.StudyEntry]) -> pd.DataFrame:
    """The listed studies as a table: date, modalities, body parts, short ID."""
    return pd.DataFrame({"Study date": [s.date for s in studies],
                         "Modality": ["/".join(s.modalities) for s in studies],
                         "Body part (DICOM tag)": ["/".join(s.body_parts) for s in studies],
                         "Study ID (hashed)": [s.id for s in studies]})


def sidebar() -> list[Item]:
    """The PACS source: the study picker in the sidebar, and the list (or a sentence) on the page.

    Returns:
        The opened study's radiographs as items ("image N"), empty while none is open.
    """
    try:
        dicomweb = connect(settings_env())
    except client.PacsError as err:
        st.error(str(err), icon=":material/lan:")
        return []
    if dicomweb is None:
        st.info(NOT_CONFIGURED, icon=":material/lan:")
        return []
    days = st.sidebar.number_input("Studies of the last … days", 1, 3650, DEFAULT_DAYS, key=DAYS_KEY)
    if st.sidebar.button("Refresh the study list", key="pacs_refresh"):
        _studies.clear()
    try:
        studies = _studies(dicomweb.base_url, datetime.date.today() - datetime.timedelta(days=int(days)), dicomweb)
    except Exception as err:  # noqa: BLE001 - any failure of the query is one sentence
        st.error(client.describe_failure(err, dicomweb.base_url), icon=":material/lan:")
        return []
    by_uid = {s.uid: s for s in studies}
    uid = st.sidebar.selectbox("Study", [None, *by_uid], key=STUDY_KEY,
                               format_func=lambda u: "—" if u is None else label(by_uid[u]))
    if uid not in by_uid:
        _listing(studies)
        return []
    return _open(dicomweb, by_uid[uid])


def _listing(studies: Sequence[run.StudyEntry]) -> None:
    st.subheader("Recent radiograph studies on the PACS")
    if not studies:
        st.info("The PACS holds no CR or DX study of that period.")
        return
    st.caption("Open one with the Study picker in the sidebar. Patients are never named: a study is shown by its "
               "date, modality, body part and a hash of its UID.")
    st.dataframe(study_table(studies), hide_index=True)


def _open(dicomweb: Any, entry: run.StudyEntry) -> list[Item]:
    try:
        with st.spinner("Retrieving the study's radiographs…"):
            sources = _fetch(dicomweb.base_url, entry.uid, dicomweb)
    except Exception as err:  # noqa: BLE001 - any failure of the retrieval is one sentence
        st.error(client.describe_failure(err, dicomweb.base_url), icon=":material/lan:")
        return []
    if not sources:
        st.info(f"Study {entry.id} holds no CR or DX radiograph.")
        return []
    write_back(dicomweb, entry)
    return [ingest(name, data) for name, data in sources]


def write_back(dicomweb: Any, entry: run.StudyEntry) -> None:
    """The sidebar button that stores the findings SR (and overlay) in the study, as the CLI does."""
    st.sidebar.caption(f"Writes the findings SR (series {findings.SR_SERIES_NUMBER}) and, when a finding is flagged, "
                       f"the Grad-CAM overlay (series {findings.SC_SERIES_NUMBER}) into study {entry.id}, as "
                       "'radtriage pacs run' does; nothing is added when they are already there.")
    if not st.sidebar.button("Write the findings to the PACS", key=f"pacs_write_{entry.id}"):
        return
    with st.spinner("Reading the study with the CLI's models and storing the findings…"):
        summary = run.run(dicomweb, study_uids=[entry.uid], progress=False)
    show_outcome(summary)


def show_outcome(summary: run.Summary) -> None:
    """What the write-back did, in the sidebar: the study's row, then each image it did not read."""
    for row in summary.rows:
        if row.image:
            st.sidebar.caption(f"{row.image}: {row.status}: {row.detail}")
        elif row.status == "written":
            overlay = " and the Grad-CAM overlay" if summary.overlays else ""
            st.sidebar.success(f"Stored the findings SR{overlay} in study {row.study}. {row.detail}")
        elif row.status == "skipped":
            st.sidebar.info(f"Nothing written: {row.detail}")
        else:
            st.sidebar.error(f"Nothing written: {row.detail}")
