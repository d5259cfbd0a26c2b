"""shop's own load: shoppers browsing the front page at a fixed pace.

The kit appends its staged shape to this file, so the test's ``Stage`` list sets how many shoppers
run and for how long.
"""

from locust import FastHttpUser, constant_throughput, task


class Shopper(FastHttpUser):
    """Two front-page requests per second, whatever the response time."""

    wait_time = constant_throughput(2)

    @task
    def front_page(self) -> None:
        self.client.get("/", name="/")
