"""The child-process helper: tests behave the same however their runner was started."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import pytest

import processes

# Prints "ready" once its KeyboardInterrupt handler is in place, then waits for Ctrl-C.
WAITS_FOR_CTRL_C = """
import sys, time
try:
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.fixture
def runner_in_the_background() -> Iterator[None]:
    """Ignore SIGINT in the test process, as a shell does for `pytest &` without job
    control; children then inherit an ignored SIGINT across exec."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_reaches_a_child_of_a_runner_started_in_the_background(
    runner_in_the_background: None,
) -> None:
    child = processes.spawn([sys.executable, "-c", WAITS_FOR_CTRL_C])
    assert child.readline(timeout=30) == "ready\n"
    child.send_signal(signal.SIGINT)
    assert child.wait(timeout=30) == 130


def test_a_silent_child_fails_the_read_instead_of_hanging() -> None:
    child = processes.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    with pytest.raises(AssertionError, match=r"no output line within 0\.2 s"):
        child.readline(timeout=0.2)
    assert child.returncode is not None  # killed, not left behind


def test_a_wait_that_runs_out_kills_the_child_and_shows_its_stderr() -> None:
    script = "import sys, time; print('stuck here', file=sys.stderr, flush=True); time.sleep(60)"
    child = processes.spawn([sys.executable, "-c", script])
    processes.wait_until(lambda: "stuck here" in child.stderr(), timeout=30, what="stderr")
    with pytest.raises(AssertionError, match=r"(?s)still running after 0\.2 s.*stuck here"):
        child.communicate(timeout=0.2)
    assert child.returncode is not None


def test_a_polling_loop_that_runs_out_fails() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0\.05 s waiting for the moon"):
        processes.wait_until(lambda: False, timeout=0.05, what="the moon")


def test_run_returns_output_and_exit_code() -> None:
    script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    done = processes.run([sys.executable, "-c", script], timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_leftover_children_are_killed() -> None:
    child = processes.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    assert processes.kill_leftovers() == [child.argv]
    assert child.returncode == -signal.SIGKILL


def test_every_test_runs_under_a_timeout(pytestconfig: pytest.Config) -> None:
    """pytest-timeout fails a hung test (the suite goes on) instead of hanging CI."""
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert 0 < float(pytestconfig.getini("timeout")) <= 600
