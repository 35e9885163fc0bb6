"""Fixtures of the reliability tests."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import JobServer


@pytest.fixture(scope="session")
def job_server():
    """A process that forks engine jobs on demand, so a test can kill them at no start-up cost."""
    server = JobServer()
    yield server
    server.close()
