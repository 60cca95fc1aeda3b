"""PACS over DICOMweb: read studies from a PACS and write the findings back as DICOM (issue 18).

``python -m radtriage pacs run --url URL`` (:mod:`radtriage.cli`) drives :func:`radtriage.pacs.run.run`:

- :mod:`radtriage.pacs.client`: the connection (dicomweb-client), credentials from the environment or
  a file, failures as one sentence;
- :mod:`radtriage.pacs.analysis`: the one seam to the models (which model reads each image, the
  verdicts per image or per study, the Grad-CAM overlay);
- :mod:`radtriage.pacs.findings`: the findings SR and the overlay Secondary Capture (highdicom);
- :mod:`radtriage.pacs.run`: query, retrieve, analyse, store; idempotent; rows and a summary.

An application layer beside the CLI and the dashboard (``.importlinter``). Importing this package
loads neither TensorFlow nor the models: the first study read does.
"""
