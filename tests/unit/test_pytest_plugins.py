"""hpa-kit's pytest plugin, loaded the way a user's project loads it (entry point ``pytest11``).

Checks: it coexists with pytest-kind-ng (both used to register ``--cluster-name``; pytest then aborts
every run), settings resolve command line > env > ini > default, and the fixtures bind one kubeconfig
and context. Inner runs are real pytest subprocesses (pytester); no cluster is started.
"""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

_ENV = ("HPA_KIT_PROVIDER", "HPA_KIT_CLUSTER_NAME", "HPA_KIT_CLUSTER", "HPA_KIT_KEEP_CLUSTER",
        "HPA_KIT_KUBECONFIG", "HPA_KIT_CONTEXT", "HPA_KIT_OVERLAY", "HPA_KIT_ADAPTER_RULES",
        "HPA_KIT_REPORTS", "HPA_KIT_KEEP_STACK", "HPA_KIT_FAIL_ON_SKIP", "CI")  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)


def test_the_package_registers_the_plugin() -> None:
    eps = importlib.metadata.entry_points(group="pytest11")
    assert {ep.name: ep.value for ep in eps}.get("hpa_kit") == "harness.pytest_plugin", (
        "pyproject.toml [project.entry-points.pytest11] must register hpa_kit = harness.pytest_plugin "
        "(reinstall with pip install -e . after changing it)"
    )


def test_our_options_and_pytest_kind_load_together(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pytest_kind", reason="pytest-kind-ng not installed: pip install -e '.[kind]'")
    # Autoloading off and both plugins named explicitly: the run has exactly the two plugins under test.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        """
        from harness.pytest_plugin import setting

        def test_options(pytestconfig):
            assert setting(pytestconfig, "hpa_kit_provider") == "local"
            assert setting(pytestconfig, "hpa_kit_cluster_name") == "mine"
            assert setting(pytestconfig, "hpa_kit_keep_cluster") is True
            # pytest-kind-ng's own options are still there, with their defaults
            assert pytestconfig.getoption("cluster_name") == "theirs"
            assert pytestconfig.getoption("keep_cluster") is False
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "-p", "pytest_kind.plugin", "-p", "no:cacheprovider",
        "--provider", "local", "--hpa-kit-cluster-name", "mine", "--hpa-kit-keep-cluster",
        "--cluster-name", "theirs",
    )
    result.assert_outcomes(passed=1)


def test_settings_precedence_cli_env_ini_default(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini(
        """
        [pytest]
        hpa_kit_provider = existing
        hpa_kit_context = from-ini
        hpa_kit_adapter_rules = deploy/rules.yaml
        hpa_kit_keep_stack = true
        """
    )
    monkeypatch.setenv("HPA_KIT_CLUSTER_NAME", "from-env")
    monkeypatch.setenv("HPA_KIT_KUBECONFIG", "/tmp/kc")
    monkeypatch.setenv("HPA_KIT_CONTEXT", "from-env")
    pytester.makepyfile(
        """
        from harness.pytest_plugin import setting

        def test_options(pytestconfig):
            assert setting(pytestconfig, "hpa_kit_provider") == "existing"         # ini
            assert setting(pytestconfig, "hpa_kit_cluster_name") == "from-env"     # env
            assert setting(pytestconfig, "hpa_kit_kubeconfig") == "/tmp/kc"         # env
            assert setting(pytestconfig, "hpa_kit_context") == "from-cli"          # cli over env, ini
            assert setting(pytestconfig, "hpa_kit_adapter_rules") == "deploy/rules.yaml"
            assert setting(pytestconfig, "hpa_kit_keep_stack") is True
            assert setting(pytestconfig, "hpa_kit_keep_cluster") is False          # default
            assert setting(pytestconfig, "hpa_kit_overlay") == "test"              # default
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hpa-kit-context", "from-cli").assert_outcomes(
        passed=1
    )


def test_a_bad_provider_in_env_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPA_KIT_PROVIDER", "minikube")
    pytester.makepyfile("def test_x(cluster_provider_name): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*HPA_KIT_PROVIDER=minikube: pick one of local, kind, existing, auto*"])
    assert result.ret != 0


def test_existing_cluster_fixtures_share_kubeconfig_and_context(
    pytester: pytest.Pytester, tmp_path: pytest.TempPathFactory
) -> None:
    # The existing provider on a kubeconfig with two contexts; the chosen context must reach kubectl
    # and the API client alike. Nothing is contacted: the servers are unroutable on purpose.
    pytester.makefile(".yaml", kubeconfig="""
        apiVersion: v1
        kind: Config
        clusters:
        - {name: a, cluster: {server: "https://127.0.0.1:1"}}
        - {name: b, cluster: {server: "https://127.0.0.1:2"}}
        users: [{name: u, user: {token: t}}]
        contexts:
        - {name: ctx-a, context: {cluster: a, user: u}}
        - {name: ctx-b, context: {cluster: b, user: u}}
        current-context: ctx-a
        """)
    pytester.makeconftest(
        """
        import pytest
        from harness.cluster.existing import ExistingCluster

        @pytest.fixture(scope="session")
        def cluster(pytestconfig):
            from harness.pytest_plugin import setting
            return ExistingCluster(kubeconfig=setting(pytestconfig, "hpa_kit_kubeconfig"),
                                   context=setting(pytestconfig, "hpa_kit_context"))
        """
    )
    pytester.makepyfile(
        """
        def test_bound(kubectl, kube_api, kubeconfig):
            assert kubectl.argv("get", "ns")[1:] == ["--context", "ctx-b", "get", "ns"]
            assert kubectl.kubeconfig == kubeconfig
            assert kube_api.configuration.host == "https://127.0.0.1:2"
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--hpa-kit-provider", "existing",
        "--hpa-kit-kubeconfig", str(pytester.path / "kubeconfig.yaml"), "--hpa-kit-context", "ctx-b",
    )
    result.assert_outcomes(passed=1)


def test_disruptive_tests_run_last(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.disruptive
        def test_a_restart(): pass

        def test_b(): pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.stdout.fnmatch_lines(["*test_b PASSED*", "*test_a_restart PASSED*"])


def test_fail_on_skip_turns_a_skip_into_a_failed_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_ok(): pass

        def test_no_cluster(): pytest.skip("kind provider unavailable: no docker")
        """
    )
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider").ret == 0
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hpa-kit-fail-on-skip")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 skipped test(s) fail this run*", "*test_no_cluster*no docker*"])
