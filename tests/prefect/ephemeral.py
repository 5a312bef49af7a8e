"""Imported by the Prefect tests before anything imports prefect: local
ephemeral Prefect (a temporary API in a subprocess, no server to start), its
state in a temporary PREFECT_HOME removed at exit, no telemetry (this
machine is offline anyway), and orchestration/prefect/ on sys.path for
`import flow`. The temporary API migrates a fresh database first: on 2 busy
cores that can take longer than Prefect's default 20 s startup timeout.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if "NBSERVE_PREFECT_HOME" not in os.environ:
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY"):
        os.environ.pop(name, None)
    home = tempfile.mkdtemp(prefix="nbserve-prefect-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ.update({
        "NBSERVE_PREFECT_HOME": home,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })
    sys.path.insert(0, str(ROOT / "orchestration" / "prefect"))
