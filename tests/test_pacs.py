"""The PACS job against a real Orthanc over DICOMweb (issue 18), plus its parts that need no server.

The server tests skip with a reason where Orthanc and its DICOMweb plugin are not installed
(``scripts/test.sh`` installs them as root). Studies carry fake patient identifiers
(:data:`dicom_fixtures.PHI`); no test asserts on timing.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests

import pacs_studies
from dicom_fixtures import PHI
from pacs_server import PASSWORD, USER, OrthancServer, running_orthanc
from radtriage import cli
from radtriage.pacs import analysis, client, findings, run

# Attributes that must carry the patient's identity: the written objects join the patient's study
IDENTITY_KEYWORDS = {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "ReferringPhysicianName",
                     "OtherPatientIDs", "InstitutionName", "PerformingPhysicianName"}


# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """One Orthanc for the session (tests empty it first)."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The shipped models on real images; stand-ins behind the shipped gate on phantoms (pacs_studies).
    Module scope: the setting must not outlive this module's tests."""
    import os

    folder = pacs_studies.stand_in_models(tmp_path_factory.mktemp("models"))
    before = os.environ.get("RADTRIAGE_MODEL_DIR")
    if folder is not None:
        os.environ["RADTRIAGE_MODEL_DIR"] = str(folder)
    yield
    if folder is not None:
        if before is None:
            os.environ.pop("RADTRIAGE_MODEL_DIR", None)
        else:
            os.environ["RADTRIAGE_MODEL_DIR"] = before


@pytest.fixture
def pacs(orthanc: OrthancServer, monkeypatch: pytest.MonkeyPatch) -> OrthancServer:
    """The session's Orthanc, emptied, with the test user's credentials in the environment."""
    orthanc.clear()
    monkeypatch.delenv(client.FILE_ENV, raising=False)
    monkeypatch.delenv(client.TOKEN_ENV, raising=False)
    monkeypatch.setenv(client.USER_ENV, USER)
    monkeypatch.setenv(client.PASSWORD_ENV, PASSWORD)
    return orthanc


def upload(server: OrthancServer, *studies: pacs_studies.Study) -> None:
    for study in studies:
        for data in study.files:
            server.upload(data)


def pacs_run(server: OrthancServer, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    """``radtriage pacs run`` in-process: (exit code, stdout, stderr)."""
    code = cli.main(["pacs", "run", "--url", server.url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def new_objects(before: dict[str, bytes], after: dict[str, bytes]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(io.BytesIO(data)) for key, data in after.items() if key not in before]


def by_study(objects: list[pydicom.Dataset], study: pacs_studies.Study, modality: str) -> list[pydicom.Dataset]:
    return [o for o in objects if o.StudyInstanceUID == study.uid and o.Modality == modality]


def assert_no_identifier(text: str) -> None:
    for value in (*PHI.values(), "Doe", "Jane", "19470312"):
        assert value not in text, f"an identifier ({value!r}) leaked"


def free_text(ds: pydicom.Dataset) -> str:
    """Every value of a dataset (nested too), but the attributes that must carry the patient's identity."""
    parts = []
    for elem in ds.iterall():
        if elem.keyword in IDENTITY_KEYWORDS or elem.VR in ("OB", "OW", "SQ"):
            continue
        parts.append(str(elem.value))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def processed(orthanc: OrthancServer) -> dict[str, Any]:
    """A chest study (a PDF and a radiologist's SR beside its radiograph) and a two-view hand study,
    stored, then processed once by ``radtriage pacs run``."""
    orthanc.clear()
    chest, hand = pacs_studies.chest_study(0, extras=True), pacs_studies.hand_study(0)
    upload(orthanc, chest, hand)
    before = orthanc.instance_files()
    mp = pytest.MonkeyPatch()
    mp.setenv(client.USER_ENV, USER)
    mp.setenv(client.PASSWORD_ENV, PASSWORD)
    out, err = io.StringIO(), io.StringIO()
    mp.setattr("sys.stdout", out)
    mp.setattr("sys.stderr", err)
    try:
        code = cli.main(["pacs", "run", "--url", orthanc.url])
    finally:
        mp.undo()
    after = orthanc.instance_files()
    return {"chest": chest, "hand": hand, "before": before, "after": after, "code": code,
            "out": out.getvalue(), "err": err.getvalue(), "new": new_objects(before, after)}


# ----------------------------------------------------------------------------------- round trip


def test_round_trip_writes_one_sr_per_study(processed: dict[str, Any]) -> None:
    assert processed["code"] == 0, processed["err"]
    for key in ("chest", "hand"):
        srs = by_study(processed["new"], processed[key], "SR")
        assert len(srs) == 1, f"{key}: {len(srs)} findings SRs"
        sr = srs[0]
        assert sr.SeriesDescription == findings.SR_DESCRIPTION
        assert sr.SeriesInstanceUID not in {s.SeriesInstanceUID for s in by_study(processed["new"], processed[key], "OT")}
        task = "chest" if key == "chest" else "mura"
        assert findings.models_of(sr) == {f"{task}={analysis.current_identities()[task]}"}
        assert findings.RESEARCH_USE in free_text(sr)
    assert set(processed["after"]) > set(processed["before"])


def test_sr_holds_each_class_probability_flag_and_threshold(processed: dict[str, Any]) -> None:
    sr = by_study(processed["new"], processed["chest"], "SR")[0]
    items = list(findings._walk(sr.ContentSequence))
    names = [i.ConceptNameCodeSequence[0].CodeMeaning for i in items if "ConceptNameCodeSequence" in i]
    n_classes = len(analysis.predictor("chest").classes)
    assert names.count("Probability") == n_classes and names.count("Threshold Value") == n_classes
    flags = [i for i in items if i.get("ValueType") == "CODE"
             and i.ConceptNameCodeSequence[0].CodeValue == findings._FLAGGED.value]
    assert len(flags) == n_classes
    probs = [float(i.MeasuredValueSequence[0].NumericValue) for i in items
             if i.get("ValueType") == "NUM" and i.ConceptNameCodeSequence[0].CodeMeaning == "Probability"]
    assert all(0.0 <= p <= 1.0 for p in probs)
    coded = {i.ConceptCodeSequence[0].CodeValue for i in items if i.get("ValueType") == "CODE"}
    assert "287272002" in coded  # Cardiomegaly, coded in SNOMED CT


def test_upper_limb_verdict_is_one_per_study(processed: dict[str, Any]) -> None:
    sr = by_study(processed["new"], processed["hand"], "SR")[0]
    items = list(findings._walk(sr.ContentSequence))
    probs = [i for i in items if i.get("ValueType") == "NUM" and i.ConceptNameCodeSequence[0].CodeMeaning == "Probability"]
    assert len(probs) == 1  # one class, one study verdict (not one per image)
    sources = [i for i in items if i.get("ValueType") == "IMAGE"]
    assert len({s.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for s in sources}) == 2


def test_overlay_is_derived_research_only_and_in_the_study(processed: dict[str, Any]) -> None:
    for key in ("chest", "hand"):
        sr = by_study(processed["new"], processed[key], "SR")[0]
        scs = by_study(processed["new"], processed[key], "OT")
        says_overlay = "The overlay shows" in free_text(sr)
        assert len(scs) == (1 if says_overlay else 0)
        for sc in scs:
            assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
            assert sc.BurnedInAnnotation == "YES" and "research use only" in sc.SeriesDescription.lower()
            assert sc.PhotometricInterpretation == "RGB" and sc.pixel_array.ndim == 3
    if pacs_studies.SHARED.is_dir():  # the real images chosen are flagged by the shipped models
        assert all(by_study(processed["new"], processed[k], "OT") for k in ("chest", "hand"))


def test_originals_are_byte_identical(processed: dict[str, Any]) -> None:
    for key, data in processed["before"].items():
        assert processed["after"][key] == data


def test_no_identifier_in_output_or_written_free_text(processed: dict[str, Any]) -> None:
    assert_no_identifier(processed["out"] + processed["err"])
    for study in ("chest", "hand"):
        assert processed[study].uid not in processed["out"] + processed["err"]
    for ds in processed["new"]:
        assert_no_identifier(free_text(ds))
    assert len(processed["err"].strip().splitlines()[-1]) < 200  # the one-line summary


def test_non_image_instances_are_left_alone(processed: dict[str, Any]) -> None:
    """The chest study's PDF and radiologist's SR neither stop it nor get read."""
    rows = [line.split("\t") for line in processed["out"].splitlines()[1:]]
    assert [r[2] for r in rows] == ["written", "written"]
    sr = by_study(processed["new"], processed["chest"], "SR")[0]
    sources = {i.ReferencedSOPSequence[0].ReferencedSOPClassUID for i in findings._walk(sr.ContentSequence)
               if i.get("ValueType") == "IMAGE"}
    assert sources == {pydicom.uid.ComputedRadiographyImageStorage}


def test_second_run_adds_nothing(processed: dict[str, Any], orthanc: OrthancServer, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(client.USER_ENV, USER)
    monkeypatch.setenv(client.PASSWORD_ENV, PASSWORD)
    code, out, err = pacs_run(orthanc, capsys, "--no-progress")
    assert code == 0, err
    assert orthanc.instance_files() == processed["after"]
    assert [line.split("\t")[2] for line in out.splitlines()[1:]] == ["skipped", "skipped"]


# ----------------------------------------------------------------------------------- failures


def test_dry_run_writes_nothing(pacs: OrthancServer, capsys: pytest.CaptureFixture[str]) -> None:
    upload(pacs, pacs_studies.chest_study(1))
    before = pacs.instance_files()
    code, out, err = pacs_run(pacs, capsys, "--dry-run", "--no-progress")
    assert code == 0, err
    assert pacs.instance_files() == before
    assert out.splitlines()[1].split("\t")[2] == "dry-run"


@pytest.mark.parametrize("password", ["wrong-password", None])
def test_refused_credentials_are_one_sentence(pacs: OrthancServer, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch, password: str | None) -> None:
    upload(pacs, pacs_studies.chest_study(2))
    if password is None:
        monkeypatch.delenv(client.USER_ENV)
        monkeypatch.delenv(client.PASSWORD_ENV)
    else:
        monkeypatch.setenv(client.PASSWORD_ENV, password)
    before = pacs.instance_files()
    code, out, err = pacs_run(pacs, capsys, "--no-progress")
    assert code == cli.EXIT_FAILED
    assert err.strip().count("\n") == 0 and "refused the credentials (HTTP 401)" in err
    assert "Traceback" not in err and "wrong-password" not in out + err and out == ""
    assert pacs.instance_files() == before


def test_credentials_in_the_url_are_refused(pacs: OrthancServer, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["pacs", "run", "--url", pacs.url.replace("http://", f"http://{USER}:{PASSWORD}@")])
    _, err = capsys.readouterr()
    assert code == cli.EXIT_USAGE and "must not hold credentials" in err and PASSWORD not in err


def test_unreachable_server_is_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    from dashboard_support import free_port

    code = cli.main(["pacs", "run", "--url", f"http://127.0.0.1:{free_port()}/dicom-web"])
    _, err = capsys.readouterr()
    assert code == cli.EXIT_FAILED and "cannot be reached" in err and "Traceback" not in err


def test_bad_since_date_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pacs", "run", "--url", "http://127.0.0.1:1/dicom-web", "--since", "last week"]) == cli.EXIT_USAGE
    assert "--since must be a date" in capsys.readouterr().err


def test_a_study_that_changes_while_read_is_left_for_the_next_run(pacs: OrthancServer) -> None:
    study = pacs_studies.chest_study(0)
    upload(pacs, study)
    dicomweb = client.connect(pacs.url)

    def analyse_while_a_view_arrives(sources: Any) -> analysis.StudyAnalysis:
        pacs.upload(pacs_studies.radiograph(pacs_studies._chest_pixels(1), study.uid, 7, modality="CR",
                                            body_part="CHEST"))
        return analysis.analyse_study(sources)

    first = run.run(dicomweb, progress=False, analyse=analyse_while_a_view_arrives)
    assert (first.failed, first.written) == (1, 0) and "changed while it was read" in first.rows[-1].detail
    second = run.run(dicomweb, progress=False)
    assert (second.written, second.images_read) == (1, 2)


def test_an_unreadable_image_gets_its_row_and_the_batch_goes_on(pacs: OrthancServer) -> None:
    bad = pacs_studies.chest_study(1)
    ds = pydicom.dcmread(io.BytesIO(bad.files[0]))
    ds.BodyPartExamined = "FOOT"  # no model here reads feet
    ds.PixelData = bytes(len(ds.PixelData))  # and a blank image
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    bad.files[0] = buf.getvalue()
    good = pacs_studies.chest_study(0)
    upload(pacs, bad, good)
    summary = run.run(client.connect(pacs.url), progress=False)
    statuses = {(r.study, r.image): r.status for r in summary.rows}
    assert statuses[(run.short_id(bad.uid), "image 1")] in ("refused", "error")
    assert statuses[(run.short_id(bad.uid), "")] == "failed"
    assert statuses[(run.short_id(good.uid), "")] == "written"
    assert all(r.detail.endswith(".") and "\n" not in r.detail for r in summary.rows)


def sr_texts(sr: pydicom.Dataset) -> list[str]:
    return [i.TextValue for i in findings._walk(sr.ContentSequence) if i.get("ValueType") == "TEXT"]


def test_the_anatomy_gate_picks_each_images_model_and_its_refusal_is_a_row_and_in_the_sr(pacs: OrthancServer) -> None:
    """A rendered page in a HAND study is refused with the gate's sentence; the chest image beside it is read by
    the chest model whatever its tag says; the hand views still make the study's upper-limb verdict."""
    study = pacs_studies.mixed_hand_study()
    upload(pacs, study)
    before = pacs.instance_files()
    summary = run.run(client.connect(pacs.url), progress=False)
    sid = run.short_id(study.uid)
    rows = {r.image: r for r in summary.rows if r.study == sid}
    assert set(rows) == {"", "image 3"} and rows[""].status == "written", rows
    refusal = rows["image 3"]
    assert refusal.status == "refused" and refusal.detail.startswith("This does not look like a radiograph")
    assert (summary.images_read, summary.images_not_read) == (3, 1)
    sr = by_study(new_objects(before, pacs.instance_files()), study, "SR")[0]
    assert findings.models_of(sr) == {f"{t}={analysis.current_identities()[t]}" for t in ("chest", "mura")}
    texts = sr_texts(sr)
    assert f"anatomy check: refused: {refusal.detail}" in " ".join(texts)
    assert any(t.startswith("anatomy check: a chest radiograph") and "Body Part Examined says HAND" in t for t in texts)
    items = list(findings._walk(sr.ContentSequence))
    read_flags = [i.ConceptCodeSequence[0].CodeMeaning for i in items if i.get("ValueType") == "CODE"
                  and i.ConceptNameCodeSequence[0].CodeValue == findings._READ_BY_MODEL.value]
    assert sorted(read_flags) == ["No", "Yes", "Yes", "Yes"]
    probs = [i for i in items if i.get("ValueType") == "NUM" and i.ConceptNameCodeSequence[0].CodeMeaning == "Probability"]
    assert len(probs) == len(analysis.predictor("chest").classes) + 1  # the chest image's classes + one study verdict
    assert "2 images' probabilities" in " ".join(texts)  # the upper-limb mean is over the two hand views only


def test_server_stopped_mid_batch_resumes_with_nothing_lost_or_duplicated(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with running_orthanc(tmp_path) as server:
        studies = [pacs_studies.chest_study(i) for i in range(3)]
        upload(server, *studies)
        originals = server.instance_files()
        dicomweb = client.connect(server.url, client.Credentials(USER, PASSWORD, None, "test"))
        calls = []

        def analyse_then_crash(sources: Any) -> analysis.StudyAnalysis:
            calls.append(1)
            result = analysis.analyse_study(sources)
            if len(calls) == 2:
                server.stop()  # the PACS goes down after the second study is read, before it is stored
            return result

        first = run.run(dicomweb, progress=False, analyse=analyse_then_crash)
        assert (first.written, first.failed) == (1, 2)
        assert all("cannot be reached" in r.detail for r in first.rows if r.status == "failed")
        server.start()
        second = run.run(dicomweb, progress=False)
        assert (second.skipped, second.written, second.failed) == (1, 2, 0)
        third = run.run(dicomweb, progress=False)
        assert (third.skipped, third.written) == (3, 0)
        after = server.instance_files()
        assert all(after[k] == v for k, v in originals.items())
        written = new_objects(originals, after)
        for study in studies:
            assert len(by_study(written, study, "SR")) == 1


# ----------------------------------------------------------------------------------- no server needed


def test_credentials_from_the_environment_and_a_private_file(tmp_path: Path) -> None:
    assert client.credentials_from_env({}).kind == "none"
    basic = client.credentials_from_env({client.USER_ENV: "u", client.PASSWORD_ENV: "p"})
    assert (basic.kind, basic.user, basic.password) == ("basic", "u", "p") and "p" not in repr(basic).replace("pacs", "")
    assert client.credentials_from_env({client.TOKEN_ENV: "t0k3n"}).kind == "bearer"
    with pytest.raises(client.PacsError, match="without a password"):
        client.credentials_from_env({client.USER_ENV: "u"})
    path = tmp_path / "pacs.credentials"
    path.write_text("# radtriage\nuser = triage\npassword = s3cret\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    creds = client.credentials_from_env({client.FILE_ENV: str(path)})
    assert (creds.user, creds.password, creds.source) == ("triage", "s3cret", "the credentials file")
    path.chmod(0o644)
    with pytest.raises(client.PacsError, match="readable by other users"):
        client.credentials_from_env({client.FILE_ENV: str(path)})
    path.write_text("s3cret\n")
    path.chmod(0o600)
    with pytest.raises(client.PacsError) as err:
        client.credentials_from_env({client.FILE_ENV: str(path)})
    assert "s3cret" not in str(err.value)


def test_bearer_token_goes_in_the_authorization_header() -> None:
    dicomweb = client.connect("http://127.0.0.1:1/dicom-web", client.Credentials(token="t0k3n", source="test"))
    assert dicomweb._session.headers["Authorization"] == "Bearer t0k3n"


def test_http_failures_are_sentences_without_credentials() -> None:
    response = requests.Response()
    response.status_code, response.reason = 401, "Unauthorized"
    message = client.describe_failure(requests.HTTPError(response=response), "http://u:secret@pacs.example:8042/x")
    assert "refused the credentials" in message and "secret" not in message and message.endswith(".")
    for url in ("ftp://pacs/dicom-web", "pacs.example", "http://user:pw@pacs.example/dicom-web"):
        with pytest.raises(client.PacsError) as err:
            client.check_url(url)
        assert "pw" not in str(err.value)


def test_search_all_stops_when_the_server_ignores_offset() -> None:
    page = [{run.STUDY_UID: {"Value": [f"1.2.{i}"]}} for i in range(run.PAGE)]
    calls = []

    def search(**kwargs: Any) -> list[dict[str, Any]]:
        calls.append(kwargs["offset"])
        return page  # the same page whatever the offset (Orthanc 1.10's DICOMweb with some filters)

    assert len(run.search_all(search, run.STUDY_UID)) == run.PAGE and len(calls) == 2


def test_short_id_is_stable_and_hides_the_uid() -> None:
    uid = "1.2.826.0.1.3680043.8.498.123456789"
    assert run.short_id(uid) == run.short_id(uid) and len(run.short_id(uid)) == 10 and "1.2" not in run.short_id(uid)
