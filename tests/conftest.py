"""Shared test settings. In CI (the `CI` environment variable set, as `.ci/run` runs) a skipped
test fails the run: a check that could not run there is a check CI did not make. Elsewhere a
skip (rendering without OpenGL, say) is allowed and listed with its reason (`-ra`).

The suite runs in two processes, a test file to each (pytest-xdist, `--dist loadfile` in
pyproject.toml); the longest files are collected first so that neither process is left with a
long file at the end while the other idles."""

import os

import pytest

import locomotion  # noqa: F401  (sets XLA flags before jax starts)

# The longest files first (about 8, 6, 5, 4, 3, 2 and 1.5 minutes on 2 cores); the rest keep
# their order. Every worker collects the same order, as pytest-xdist requires.
LONGEST_FIRST = (
    "test_tasks.py",
    "test_shipped_policies.py",
    "test_multiprocess.py",
    "test_hand_tasks.py",
    "test_info.py",
    "test_rough.py",
    "test_export_replay.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the rest, the order is kept


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
