"""Shared test settings. In CI (the `CI` environment variable set, as `.ci/run` runs) a skipped
test fails the run: a check that could not run there is a check CI did not make. Elsewhere a
skip (rendering without OpenGL, say) is allowed and listed with its reason (`-ra`)."""

import os

import pytest

import locomotion  # noqa: F401  (sets XLA flags before jax starts)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(
            f"CI: {len(skipped)} test(s) skipped; CI must run every test (see the reasons above)",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
