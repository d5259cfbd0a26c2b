"""hpa-kit in-cluster load: every simulated user sends one request to one path at a fixed pace.

Settings come from the environment (the `locust-settings` ConfigMap), so one file drives every
scenario:
  HPA_KIT_LOAD_PATH    request path, e.g. "/" (hits), "/work?ms=200" (fpm), "/produce?n=5" (queue)
  HPA_KIT_LOAD_METHOD  GET or POST (POST for /produce)
  HPA_KIT_USER_RPS     requests per second per user; total rate = users x this
"""

import os

from locust import HttpUser, constant_throughput, task

PATH = os.environ.get("HPA_KIT_LOAD_PATH", "/")
METHOD = os.environ.get("HPA_KIT_LOAD_METHOD", "GET").upper()
USER_RPS = float(os.environ.get("HPA_KIT_USER_RPS", "1"))


class ScenarioUser(HttpUser):
    wait_time = constant_throughput(USER_RPS)

    @task
    def request(self) -> None:
        # Name by path without the query so the stats table has one row per scenario.
        self.client.request(METHOD, PATH, name=PATH.split("?", 1)[0])
