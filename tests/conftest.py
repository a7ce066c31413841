"""Shared test settings. In CI (the `CI` environment variable set, as `.ci/run` runs) a skipped
test fails the run: a check that could not run there is a check CI did not make. Elsewhere a
skip (rendering without OpenGL, say) is allowed and listed with its reason (`-ra`).

The suite runs in two processes, a test file to each (pytest-xdist, `--dist loadfile` in
pyproject.toml); the longest files are collected first so that neither process is left with a
long file at the end while the other idles."""

import collections
import os
import shutil
import sys
import tempfile

import pytest

_OWN_CACHE: str | None = None  # the cache directory this process made (and removes at its end)


def _share_compilations() -> None:
    """One XLA compilation cache for the whole run: both workers and every `locomotion`
    process a test starts inherit the variable, and load what another already compiled
    (quadruped_joystick's vmapped reset and step take about 30 s each to trace and compile on
    2 cores, and many tests compile the same ones; JAX caches what took over a second to
    compile, its default). The directory is this run's alone (a fresh one, removed at the
    run's end), so nothing carries over from one run of the suite to the next.
    LOCOMOTION_TEST_XLA_CACHE=0 turns it off. (Three CI runs in a row segfaulted in XLA, twice
    while loading or saving an executable of this cache, and this cache was suspected; the
    cause was the memory-mapping limit that `_release_compiled_graphs` keeps workers under.)"""
    global _OWN_CACHE
    if os.environ.get("LOCOMOTION_TEST_XLA_CACHE") == "0":
        os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
        if "jax" in sys.modules:  # a plugin imported jax before this file: set it there too
            import jax

            jax.config.update("jax_enable_compilation_cache", False)
        return
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        _OWN_CACHE = tempfile.mkdtemp(prefix="locomotion-tests-xla-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    if "jax" in sys.modules:
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


_share_compilations()


def _compile_for_short_runs() -> None:
    """Cheaper code generation for the suite's processes (and the `locomotion` processes tests
    start, which inherit the variable): LLVM at -O1 instead of XLA's default -O2, and XLA:CPU's
    older loop-fusion emitters instead of its MLIR fusion emitters. The suite compiles many
    large MJX graphs and runs each briefly. -O1 compiles quadruped_joystick's vmapped step
    14-25 % faster on 2 cores and runs it within the noise of -O2; the older emitters take
    another quarter off (256 envs: 67 -> 50 s to trace and compile, hand_reorient at 64 envs
    78 -> 57 s) and train about 10 % slower (benchmarks/NOTES.md, "The suite at LLVM -O1" and
    "The suite without XLA:CPU's fusion emitters"). Only code generation changes, not what is
    computed, so the suite still tests the graphs users run; `locomotion` itself keeps XLA's
    defaults for long training runs. Set XLA_FLAGS yourself to test with other settings."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_backend_optimization_level" not in flags:
        flags += " --xla_backend_optimization_level=1"
    if "--xla_cpu_use_fusion_emitters" not in flags:
        flags += " --xla_cpu_use_fusion_emitters=false"
    os.environ["XLA_FLAGS"] = flags.strip()


_compile_for_short_runs()

# `locomotion train` and `locomotion info` give XLA one CPU device per core (locomotion/gpu.py);
# the suite's two workers already fill both cores, so the `locomotion` processes tests start
# keep to one device, as they did before. Tests of the device count set the variable themselves.
os.environ.setdefault("LOCOMOTION_CPU_DEVICES", "1")

import locomotion  # noqa: E402,F401  (sets XLA flags before jax starts)

# The longest files first (in a fresh-clone run at 0858955: about 11.5, 5, 5, 4.5, 4, 4, 3, 3,
# 2.5, 2.5, 2.5 and 2 minutes on 2 cores, then 1 or less), the rest in their order, so that
# neither worker is left with a long file at the end while the other idles. pytest-xdist
# hands the files out in this order (`--no-loadscope-reorder` in pyproject.toml; its default
# order, the most tests first, once left a 5-minute file of 2 tests for the end). Every worker
# collects the same order, as pytest-xdist requires.
LONGEST_FIRST = (
    "test_tasks.py",
    "test_end_to_end.py",
    "test_hand_tasks.py",
    "test_rough.py",
    "test_multiprocess.py",
    "test_shipped_policies.py",
    "test_robustness.py",
    "test_export_replay.py",
    "test_warp.py",
    "test_ppo.py",
    "test_brax.py",
    "test_envs.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the rest, the order is kept


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_graphs():
    """At the end of each test file, drop what its tests compiled (`jax.clear_caches`, and the
    envs the native replays keep, locomotion/replay.py). Each compiled MJX graph that a
    process holds occupies about 2,000 of its memory mappings (XLA:CPU loads every kernel as
    an object of its own, three mappings each: quadruped_joystick's step, one env, 2,065), and
    Linux allows a process 65,530 (vm.max_map_count): a worker that kept the graphs of every
    file it ran crossed that limit about 40 minutes into the run, and XLA then segfaulted in
    whatever mapped memory next (compiling, or loading and saving executables of the
    compilation cache). A file's graphs are of no use to the next file, which builds envs
    and jits functions of its own."""
    yield
    if "jax" not in sys.modules:
        return
    import gc

    import jax

    from locomotion import replay

    replay._built_env.cache_clear()
    jax.clear_caches()
    gc.collect()  # envs and their kept, jitted methods refer to each other


@pytest.fixture
def randomized_mj_models():
    """A function of an env, a batch of its states and optionally a `reference` env (whose
    `randomized_model` to use): each env's MjModel of its episode's randomized physics (the
    nominal MjModel with the fields the task's randomization changed), and the names of the
    fields changed in any of them."""
    import copy

    import jax

    from locomotion.replay import randomized_fields

    def models(env, states, reference=None):
        reference = reference or env
        made, changed = [], set()
        for i in range(len(states.done)):
            params = jax.tree.map(lambda x, i=i: x[i], states.info["params"])
            fields = randomized_fields(reference.mjx_model, reference.randomized_model(params))
            m = copy.copy(env.mj_model)
            for name, value in fields.items():
                getattr(m, name)[:] = value
            made.append(m)
            changed |= set(fields)
        return made, changed

    return models


@pytest.fixture
def train_on_two_cpu_devices(tmp_path):
    """A function of `impl` and `iterations`: `locomotion train quadruped_joystick --preset
    smoke --env.impl IMPL` in a subprocess where XLA has two CPU devices (one per core, as
    `locomotion train` sets up on a CPU), without XLA's optimizations (a short run;
    `locomotion.gpu.CPU_FAST_COMPILE`), no video. Checks that it finished with its export and
    returns the finished process."""
    import subprocess

    from locomotion import gpu

    def train(impl: str, iterations: int):
        run = tmp_path / "run"
        args = ["train", "quadruped_joystick", "--preset", "smoke", "--env.impl", impl]
        args += ["--run.num-iterations", str(iterations), "--run.video-seconds", "0"]
        result = subprocess.run(
            [sys.executable, "-m", "locomotion.cli", *args, "--no-progress", "--run-dir", run],
            env=dict(os.environ, LOCOMOTION_CPU_DEVICES="2", XLA_FLAGS=gpu.CPU_FAST_COMPILE),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert (run / "policy" / "policy.onnx").is_file()
        return result

    return train


@pytest.fixture(scope="module")
def short_quadruped_episodes():
    """A function of `impl`: quadruped_joystick with 0.2 s episodes (10 control steps) and no
    zero commands in the training wrapper, 8 envs, and its reset and step jitted apart, made
    once per test file (tests/test_envs.py runs it with jax and native, and against warp). The
    tests run 25 steps: both compile for a brief run (`jit_brief`, locomotion/envs.py)."""
    made = {}

    def make(impl: str = "jax"):
        if impl not in made:
            import dataclasses

            from locomotion import registry
            from locomotion.envs import TrainingWrapper, jit_brief

            entry = registry.entry("quadruped_joystick")
            config = dataclasses.replace(
                entry.env_config, impl=impl, episode_seconds=0.2, zero_command_prob=0.0
            )
            wrapper = TrainingWrapper(entry.env_class(config), 8)
            made[impl] = wrapper, jit_brief(wrapper.reset), jit_brief(wrapper.step)
        return made[impl]

    return make


@pytest.fixture(scope="module")
def task_env():
    """A function of a registered task's name: its env at the registered settings, kept until
    another task's is asked for, so that a test file's checks of one task in a row share its
    kept traces and compiled reset and step (locomotion/envs.py). One at a time: ten tasks'
    compiled reset and step held at once would take most of a process's memory mappings
    (`_release_compiled_graphs`)."""
    latest: dict = {}

    def make(name: str):
        if name not in latest:
            import gc

            from locomotion import registry

            latest.clear()
            gc.collect()  # the previous env's compiled graphs go before the next compiles
            latest[name] = registry.make(name)
        return latest[name]

    return make


def pytest_unconfigure(config):
    if _OWN_CACHE:  # the controller (its workers inherited the directory), or a run without xdist
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# ------------------------------------------------------------------ where the compile time goes
# LOCOMOTION_COMPILE_REPORT=FILE appends one JSON line per test (setup and call together) to
# FILE: the seconds this test process spent tracing, lowering and compiling XLA graphs, and
# how many compilations the run's cache served (`locomotion` processes a test starts are not
# counted), and `graphs`: the name and seconds of each trace and compile over a second, and
# each cache hit; and `maps`, the test process's memory mappings after the test (Linux,
# `_release_compiled_graphs`). A jitted function traced inside another (an env's kept reset
# and step, locomotion/envs.py) counts in both traces' seconds. Off unless set;
# benchmarks/NOTES.md sums up one whole run's report.
_COMPILE_REPORT = os.environ.get("LOCOMOTION_COMPILE_REPORT")
_compile_seconds: collections.Counter = collections.Counter()

if _COMPILE_REPORT:
    import jax.monitoring

    _EVENTS = {
        "/jax/core/compile/jaxpr_trace_duration": "trace_s",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
        "/jax/core/compile/backend_compile_duration": "compile_s",
        "/jax/compilation_cache/compile_time_saved_sec": "cache_saved_s",
    }

    def _on_duration(event: str, seconds: float, **_) -> None:
        name = _EVENTS.get(event)
        if name:
            _compile_seconds[name] += seconds
            _compile_seconds["compiles_over_1s"] += name == "compile_s" and seconds > 1.0
            _compile_seconds["cache_hits"] += name == "cache_saved_s"

    jax.monitoring.register_event_duration_secs_listener(_on_duration)

    import logging
    import re

    _graphs: list = []  # [what, graph name, seconds] of this test's traces and compiles > 1 s
    _GRAPH_LINES = {
        "trace": re.compile(r"Finished tracing \+ transforming (\S+) for pjit in ([\d.]+) sec"),
        "compile": re.compile(r"Finished XLA compilation of (\S+) in ([\d.]+) sec"),
        "cache hit": re.compile(r"Persistent compilation cache hit for '([^']+)'()"),
    }

    class _GraphLog(logging.Handler):
        """JAX logs each trace and compile with the graph's name (at DEBUG unless
        jax_log_compiles): which graphs a test builds, and which the run's cache served."""

        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            for what, pattern in _GRAPH_LINES.items():
                m = pattern.search(message)
                if m and (what == "cache hit" or float(m.group(2)) > 1.0):
                    _graphs.append([what, m.group(1), round(float(m.group(2) or 0), 1)])

    for _name in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.compiler"):
        _logger = logging.getLogger(_name)
        _logger.setLevel(logging.DEBUG)
        _logger.addHandler(_GraphLog(logging.DEBUG))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _compile_seconds.clear()
        _graphs.clear()
        yield
        import json

        row = {"test": item.nodeid, **{k: round(v, 2) for k, v in _compile_seconds.items() if v}}
        row["graphs"] = list(_graphs)
        if os.path.exists("/proc/self/maps"):  # the process's memory mappings after the test
            with open("/proc/self/maps") as f:
                row["maps"] = sum(1 for _ in f)
        with open(_COMPILE_REPORT, "a") as f:
            f.write(json.dumps(row) + "\n")


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


@pytest.fixture(scope="module")
def procs():
    """Starts `locomotion` processes for a test file (tests/test_multiprocess.py's `Processes`)
    and kills whatever is left of them at the file's end; none may be left behind."""
    from test_multiprocess import Processes, _children_of

    p = Processes()
    yield p
    p.kill_all()
    assert not _children_of(os.getpid()), "a test left processes behind"
