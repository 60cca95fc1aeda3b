"""A real Orthanc PACS with its DICOMweb plugin, started by the tests on a free loopback port.

Debian's ``orthanc`` and ``orthanc-dicomweb`` packages provide it (``scripts/test.sh`` installs them as
root); :func:`orthanc_missing` says why the PACS tests skip where they are absent. Each server has its
own temporary storage folder, accepts loopback connections only, and requires HTTP basic auth with
:data:`USER` / :data:`PASSWORD`. It can be stopped and started again on the same port and storage, as a
PACS that goes down mid-batch and comes back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from dashboard_support import free_port

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "radtriage-test", "s3cret-test-password"
START_TIMEOUT = 60.0  # seconds: generous, for a loaded CI machine; a healthy start takes about one


def orthanc_missing() -> str | None:
    """Why a test Orthanc cannot run here, or None when it can."""
    if shutil.which(ORTHANC) is None:
        return "Orthanc is not installed (Debian: apt-get install orthanc orthanc-dicomweb; scripts/test.sh does it as root)"
    if not DICOMWEB_PLUGIN.is_file():
        return f"the Orthanc DICOMweb plugin is missing ({DICOMWEB_PLUGIN}; Debian package orthanc-dicomweb)"
    return None


@contextmanager
def running_orthanc(folder: Path) -> Iterator[OrthancServer]:
    """A started Orthanc in ``folder``, stopped on leaving (the test skips where none can run)."""
    reason = orthanc_missing()
    if reason:
        pytest.skip(reason)
    server = OrthancServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class OrthancServer:
    """One Orthanc process with DICOMweb at ``/dicom-web/``, basic auth, loopback only.

    Args:
        folder: a private folder for the configuration, the storage and the log.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = folder / "orthanc.json"
        (folder / "storage").mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps({
            "Name": "radtriage-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.port,
            "DicomPort": free_port(),  # Orthanc 1.10 cannot switch its DICOM listener off: a free port
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
            "HttpsCACertificates": "",
        }, indent=2))

    @property
    def url(self) -> str:
        """The DICOMweb root."""
        return f"http://127.0.0.1:{self.port}/dicom-web"

    @property
    def rest(self) -> str:
        """Orthanc's own REST root (the tests use it to read raw stored files)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start Orthanc and wait until its REST API answers."""
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.folder)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start; see {self.folder / 'orthanc.log'}")
            try:
                if requests.get(f"{self.rest}/system", auth=(USER, PASSWORD), timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL) and wait for it."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    # ------------------------------------------------------------------ helpers for assertions

    def get(self, path: str) -> requests.Response:
        """GET on Orthanc's REST API (authenticated)."""
        r = requests.get(f"{self.rest}{path}", auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r

    def upload(self, data: bytes) -> str:
        """Store one DICOM file through the REST API; returns its Orthanc instance id."""
        r = requests.post(f"{self.rest}/instances", data=data, auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r.json()["ID"]

    def instance_files(self) -> dict[str, bytes]:
        """Every stored instance's file, by Orthanc id (the bytes as stored)."""
        return {i: self.get(f"/instances/{i}/file").content for i in self.get("/instances").json()}

    def clear(self) -> None:
        """Delete every study."""
        for study in self.get("/studies").json():
            requests.delete(f"{self.rest}/studies/{study}", auth=(USER, PASSWORD), timeout=30).raise_for_status()
