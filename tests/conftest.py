"""Test-session settings shared by every test module."""

import os

# torch's OpenMP threads spin while waiting by default; on small shared CI machines (2 cores) that stalls
# tiny tensor ops several-fold. Passive waiting must be set before torch (libgomp) is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests never reach the Hugging Face hub: models are built locally from configs.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
