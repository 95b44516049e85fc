"""Shared fixtures. LibreOffice tests use `soffice` / `soffice_uno`: skipped locally when LibreOffice
is missing, failed when $CI is set (CI must run them)."""
import pytest

from libreoffice import require_soffice


@pytest.fixture(scope="session")
def soffice():
    require_soffice()


@pytest.fixture(scope="session")
def soffice_uno():
    require_soffice(uno=True)
