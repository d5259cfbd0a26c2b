"""The end-to-end scenarios' fixtures come from hpa-kit's pytest plugin (``harness.pytest_plugin``):
``cluster``, ``stack`` (installed once per session), ``kubectl``, ``kube_api``, ``scenario_dir``
(``reports/<run>/<test>/``, with the stack's diagnostics when a test fails), ``load`` and
``hpa_recorder``. This folder adds nothing of its own: the repo's scenarios use the plugin exactly as
a project that installs the kit does.
"""
