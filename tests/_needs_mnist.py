"""Run by test_data.py in a subprocess to check conftest's missing-MNIST rule (CI fails, local
skips). Its name does not match test_*.py, so the suite itself never collects it."""


def test_needs_mnist(mnist_dir):
    assert mnist_dir.is_dir()
