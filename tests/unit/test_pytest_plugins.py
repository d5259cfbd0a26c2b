"""Our pytest options coexist with pytest-kind-ng's plugin (the ``[kind]`` extra).

Both used to register ``--cluster-name`` and ``--keep-cluster``; pytest then aborts every run with
``ValueError: option dest 'cluster_name' already used``. Ours are namespaced ``--hpa-kit-*``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.fixture(autouse=True)
def _not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # The inner runs copy only our conftest: its CI rule (skips checked against tests/allowed_skips.py)
    # belongs to this repo's runs, not to theirs.
    monkeypatch.delenv("CI", raising=False)


def test_our_options_and_pytest_kind_load_together(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pytest_kind", reason="pytest-kind-ng not installed: pip install -e '.[kind]'")
    # Autoloading off and the plugin named explicitly: the run has exactly the two plugins under test.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    for var in ("HPA_KIT_PROVIDER", "HPA_KIT_CLUSTER_NAME", "HPA_KIT_CLUSTER", "HPA_KIT_KEEP_CLUSTER"):
        monkeypatch.delenv(var, raising=False)
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        def test_options(pytestconfig):
            assert pytestconfig.getoption("hpa_kit_provider") == "local"
            assert pytestconfig.getoption("hpa_kit_cluster_name") == "mine"
            assert pytestconfig.getoption("hpa_kit_keep_cluster") is True
            # pytest-kind-ng's own options are still there, with their defaults
            assert pytestconfig.getoption("cluster_name") == "theirs"
            assert pytestconfig.getoption("keep_cluster") is False
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "pytest_kind.plugin", "-p", "no:cacheprovider",
        "--provider", "local", "--hpa-kit-cluster-name", "mine", "--hpa-kit-keep-cluster",
        "--cluster-name", "theirs",
    )
    result.assert_outcomes(passed=1)


def test_env_fallbacks(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPA_KIT_PROVIDER", "kind")
    monkeypatch.setenv("HPA_KIT_CLUSTER_NAME", "from-env")
    monkeypatch.setenv("HPA_KIT_KUBECONFIG", "/tmp/kc")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        def test_options(pytestconfig):
            assert pytestconfig.getoption("hpa_kit_provider") == "kind"
            assert pytestconfig.getoption("hpa_kit_cluster_name") == "from-env"
            assert pytestconfig.getoption("hpa_kit_kubeconfig") == "/tmp/kc"
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
