"""The dashboard's PACS source (issue 18, item 2) against a real Orthanc, driven by Streamlit's AppTest.

The studies carry the fake patient identifiers of :data:`dicom_fixtures.PHI`: no test may find one of
them, or a study UID, on the page. The shipped models read the images (real NIH / FracAtlas images
wrapped in DICOM where ../shared/data exists, else phantoms). Skips with a reason without Orthanc.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

import pacs_studies  # noqa: E402
from dicom_fixtures import PHI  # noqa: E402
from pacs_server import PASSWORD, USER, OrthancServer, running_orthanc  # noqa: E402
from radtriage.dashboard import inputs, pacs_source  # noqa: E402
from radtriage.pacs import client, findings, run  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 240  # the first open loads TensorFlow and the shipped models; the write-back loads them for the CLI's job


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    with running_orthanc(tmp_path_factory.mktemp("orthanc-dashboard")) as server:
        yield server


@pytest.fixture
def studies(orthanc: OrthancServer) -> dict[str, pacs_studies.Study]:
    """An emptied PACS holding a chest study (a PDF and a report beside its radiograph) and a hand study."""
    orthanc.clear()
    pacs_source._studies.clear()  # the page's list is cached for a minute (its Refresh button does this)
    found = {"chest": pacs_studies.chest_study(0, extras=True), "hand": pacs_studies.hand_study(0)}
    for study in found.values():
        for data in study.files:
            orthanc.upload(data)
    return found


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    return pacs_studies.stand_in_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def no_pacs_settings(monkeypatch: pytest.MonkeyPatch, stand_ins: Path | None) -> None:
    for name in pacs_source.SECRET_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    if stand_ins is None:
        monkeypatch.delenv("RADTRIAGE_MODEL_DIR", raising=False)  # the shipped models, on real images
    else:  # phantoms: stand-ins behind the shipped gate (see pacs_studies.stand_in_models)
        monkeypatch.setenv("RADTRIAGE_MODEL_DIR", str(stand_ins))


def open_pacs_source(secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if secrets:
        at.secrets["pacs"] = secrets
    at.run()
    at.radio(key=inputs.SOURCE_KEY).set_value(inputs.PACS)
    at.run()
    assert not at.exception, at.exception
    return at


def page_text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "error", "warning", "info", "success", "caption", "subheader")
             for e in getattr(at, kind)]
    parts += [df.value.to_csv() for df in at.dataframe]
    parts += [str(o) for box in at.selectbox for o in box.options]
    return "\n".join(str(p) for p in parts)


def assert_nothing_identifying(at: AppTest, studies: dict[str, pacs_studies.Study]) -> None:
    text = page_text(at)
    for value in (*PHI.values(), "Doe", "Jane"):
        assert value not in text, f"an identifier ({value!r}) is on the page"
    for study in studies.values():
        assert study.uid not in text


def sr_count(server: OrthancServer, study: pacs_studies.Study) -> int:
    dicomweb = client.connect(server.url, client.Credentials(USER, PASSWORD, None, "test"))
    return sum(1 for i in run._instances(dicomweb, study.uid) if run._value(i, run.MODALITY) == "SR"
               and run._value(i, run.SERIES_DESCRIPTION) == findings.SR_DESCRIPTION)


def test_without_a_configured_pacs_the_source_says_so_in_one_sentence() -> None:
    at = open_pacs_source()
    assert [i.value for i in at.info] == [pacs_source.NOT_CONFIGURED]
    assert not at.error and not at.dataframe and not any(s.label == "Study" for s in at.selectbox)
    at.radio(key=inputs.SOURCE_KEY).set_value(inputs.FILES)
    at.run()
    assert any(b.label == "Analyse" for b in at.button)  # the files source is as it was


def test_the_study_list_shows_date_modality_body_part_and_a_hashed_id_only(
        orthanc: OrthancServer, studies: dict[str, pacs_studies.Study]) -> None:
    at = open_pacs_source({"url": orthanc.url, "user": USER, "password": PASSWORD})
    table = next(df.value for df in at.dataframe if "Study ID (hashed)" in df.value.columns)
    assert sorted(table["Study ID (hashed)"]) == sorted(run.short_id(s.uid) for s in studies.values())
    assert set(table["Body part (DICOM tag)"]) == {"CHEST", "HAND"}
    assert len(at.selectbox(key=pacs_source.STUDY_KEY).options) == 3  # "—" and the two studies
    assert_nothing_identifying(at, studies)


def test_opening_a_study_shows_results_and_writing_back_twice_stores_one_sr(
        orthanc: OrthancServer, studies: dict[str, pacs_studies.Study], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pacs_source.URL_ENV, orthanc.url)  # the environment, as for the CLI
    monkeypatch.setenv(client.USER_ENV, USER)
    monkeypatch.setenv(client.PASSWORD_ENV, PASSWORD)
    at = open_pacs_source()
    chest = studies["chest"]
    picker = at.selectbox(key=pacs_source.STUDY_KEY)  # its options are the labels the page shows
    picker.select_index(next(i for i, o in enumerate(picker.options) if o.endswith(run.short_id(chest.uid))))
    at.run()
    assert not at.exception, at.exception
    table = next(df.value for df in at.dataframe if "Probability" in df.value.columns)
    assert len(table) > 1  # the chest model's classes
    assert next(r for r in at.radio if r.label == "Model").value == "chest"
    assert any(c.endswith("image 1") for image in at.get("image") for c in image.captions)  # by its place
    assert_nothing_identifying(at, studies)
    before = orthanc.instance_files()

    at.button(key=f"pacs_write_{run.short_id(chest.uid)}").click()
    at.run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Stored the findings SR") for s in at.success), [e.value for e in at.error]
    assert sr_count(orthanc, chest) == 1 and sr_count(orthanc, studies["hand"]) == 0
    written = orthanc.instance_files()
    assert all(written[k] == v for k, v in before.items())  # the originals untouched

    at.button(key=f"pacs_write_{run.short_id(chest.uid)}").click()
    at.run()
    assert not at.exception, at.exception
    assert any(run.ALREADY_DONE in i.value for i in at.info)
    assert orthanc.instance_files() == written
    assert_nothing_identifying(at, studies)


def test_pacs_secrets_are_laid_over_the_environment_under_the_clis_names() -> None:
    env = pacs_source.settings_env({client.USER_ENV: "env-user", "OTHER": "x"},
                                   {"url": "http://pacs.example/dicom-web", "user": "triage", "password": "pw"})
    assert env == {client.USER_ENV: "triage", client.PASSWORD_ENV: "pw", pacs_source.URL_ENV: "http://pacs.example/dicom-web",
                   "OTHER": "x"}
    assert pacs_source.connect({}) is None
    with pytest.raises(client.PacsError, match="must not hold credentials"):
        pacs_source.connect({pacs_source.URL_ENV: "http://u:pw@pacs.example/dicom-web"})
