"""The suite's time budget (tests/conftest.py), on a suite of its own: a test over the per-test ceiling is listed and
fails the run, and a store built once is an entry of its own, not part of the time of the test that asked first."""
import re
import textwrap
from pathlib import Path

pytest_plugins = ["pytester"]

INNER_SUITE = textwrap.dedent("""
    import time

    from conftest import built_once


    def test_slow():
        time.sleep(2)


    def test_asks_for_a_slow_build():
        built_once("slow-store", lambda root: time.sleep(2))


    def test_quick():
        pass
""")


def inner_run(pytester, monkeypatch, ceiling: str):
    """The small suite, run by pytest in a process of its own as a whole run (not as a pytest-xdist worker, which
    leaves the summary and the verdict to its controller), with builds of its own."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("LATENTLAB_BUILT_ONCE", raising=False)
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_inner=INNER_SUITE)
    return pytester.runpytest_subprocess("--ceiling", ceiling, "-p", "no:cacheprovider")


def test_a_test_over_the_ceiling_fails_the_run_and_a_shared_build_is_counted_apart(pytester, monkeypatch):
    result = inner_run(pytester, monkeypatch, "0.5")
    output = result.stdout.str()
    assert result.ret == 1, output  # every test passed; the budget failed the run
    assert "3 passed" in output
    listed = dict(re.findall(r"^\s*[\d.]+s (.+?)(  OVER THE CEILING)?$", output, re.M))
    assert listed["test_inner.py::test_slow"] and listed["built once: slow-store"]
    assert listed["test_inner.py::test_asks_for_a_slow_build"] == ""  # its wait was the build's, listed apart


def test_a_run_within_the_ceiling_passes(pytester, monkeypatch):
    result = inner_run(pytester, monkeypatch, "30")
    assert result.ret == 0, result.stdout.str()
    assert "OVER THE CEILING" not in result.stdout.str()
