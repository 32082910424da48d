"""Test-wide settings shared by both apps' tests.

The apps serialise GPU work with a machine-wide file lock. Tests must never take the real one: another
process on the machine (a running app, another test run) would make a test wait or its warm-up skip.
Every test process, and every `marimo export`/`marimo run` it starts (they inherit the environment),
gets a private lock file instead.
"""

import os
import tempfile

LOCK_ENV = "GPU_NOTEBOOKS_LOCK_PATH"

if not os.environ.get(LOCK_ENV):
    os.environ[LOCK_ENV] = os.path.join(tempfile.mkdtemp(prefix="gpu-notebooks-test-"), "gpu.lock")
