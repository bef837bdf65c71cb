import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random-weight Qwen2 model directory (mlx_lm-loadable), built once per test session."""
    from synthia.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture
def two_processes(monkeypatch):
    """synthia.forked shares even a short list among 2 processes, whatever the machine."""
    from synthia import forked

    monkeypatch.setattr(forked, "MIN_ITEMS", 1)
    monkeypatch.setattr(forked, "MAX_PROCESSES", 2)
    monkeypatch.setattr(forked.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(forked.sys, "platform", "linux")
