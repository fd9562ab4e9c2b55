"""End-to-end tests drive the installed ``keysyncd`` command and daemon against a real fleet."""

from tests.integration.conftest import (  # noqa: F401 - fixtures shared with integration tests
    fleet,
    fleet5,
    make_fleet,
    pytest_collection_modifyitems,
)
