"""When a process of ours may fork a child that runs our code: the environment, the CPUs, the platform and the
threads running decide."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from comfywatchman import fork_rules


def test_the_environment_the_cpus_and_the_platform_can_refuse_a_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fork_rules.fork_refusal({fork_rules.FORK_ENV: "0"}) == "COMFYWATCHMAN_FORK_STAGES=0"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert fork_rules.fork_refusal({}) == "one CPU: nothing to gain"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert fork_rules.fork_refusal({}) == "no safe fork on darwin"


def test_threads_refuse_a_fork_and_none_are_counted_where_threading_was_never_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "listdir", lambda path: ["1"])  # one native thread, as /proc/self/task says
    monkeypatch.delitem(sys.modules, "threading")  # as in a process that has loaded nothing yet
    assert fork_rules.thread_count() == 1
    assert fork_rules.fork_refusal({}) is None
    monkeypatch.setitem(sys.modules, "threading", threading)
    monkeypatch.setattr(threading, "active_count", lambda: 3)
    assert fork_rules.fork_refusal({}) == "3 threads are running"
