"""Load test for the API with locust (`pip install -e '.[load]'`), against a server you run here.

    DIALER_DEMO_API_KEY=demo-key make run            # in one shell
    .venv/bin/locust -f bench/locustfile.py --headless -u 20 -r 5 -t 60s \
        --host http://127.0.0.1:8080                  # in another

Each simulated partner creates its own batch (calling number from DIALER_LOAD_CALLING_NUMBER,
default the demo agent's), then keeps adding chunks of DIALER_LOAD_RECORDS records (default 500;
5% re-sent numbers in another format, so updates are exercised too), reading the batch back, and now
and then enrolling DIALER_LOAD_CONTACTS contacts (default 100, chained by groups of three) through the
contact-enrollment face, each request a new batch.
The key comes from DIALER_LOAD_API_KEY (default demo-key). Only loopback targets belong here.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

API_KEY = os.environ.get("DIALER_LOAD_API_KEY", "demo-key")
CALLING_NUMBER = os.environ.get("DIALER_LOAD_CALLING_NUMBER", "+15005550006")
RECORDS = int(os.environ.get("DIALER_LOAD_RECORDS", "500"))
CONTACTS = int(os.environ.get("DIALER_LOAD_CONTACTS", "100"))
AREAS = ("212", "305", "312", "415", "512", "617", "702", "206")


class Partner(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.headers = {"x-api-key": API_KEY}
        self.sent: list[str] = []
        resp = self.client.post("/api/call/createBatch", headers=self.headers, name="createBatch",
                                json={"name": f"load {random.randrange(10**6)}", "callingNumbers": [CALLING_NUMBER],
                                      "concurrencyLimit": 20})
        self.batch_id = resp.json()["data"]["batchId"]
        self.agent_id = resp.json()["data"]["agentId"]

    def _number(self) -> str:
        if self.sent and random.random() < 0.05:
            e164 = random.choice(self.sent)
            return f"1 ({e164[2:5]}) {e164[5:8]}-{e164[8:]}"  # the same number, written differently
        e164 = f"+1{random.choice(AREAS)}{random.randrange(2_000_000, 10_000_000)}"
        self.sent.append(e164)
        return e164

    @task(5)
    def add_calls(self) -> None:
        records = [{"phoneNumber": self._number(), "name": "Zoë Load", "account_id": f"ACC-{i}"} for i in range(RECORDS)]
        with self.client.post("/api/call/addCallsToBatch", headers=self.headers, name="addCallsToBatch",
                              json={"batchId": self.batch_id, "call_data": records}, catch_response=True) as resp:
            body = resp.json()
            if resp.status_code != 200 or body["data"]["added"] != len(body["data"]["callIds"]):
                resp.failure(f"{resp.status_code}: {body.get('errorMessage')}")

    @task(1)
    def read_batch(self) -> None:
        self.client.get(f"/api/call/batches/{self.batch_id}", headers=self.headers, name="getBatch")

    @task(1)
    def enroll(self) -> None:
        contacts = [{"phoneNumber": self._number(), "name": "Zoë Load", "account_id": f"G{i // 3}"}
                    for i in range(CONTACTS)]
        with self.client.post(f"/api/v1/agents/{self.agent_id}/schedule/sequences", headers=self.headers,
                              name="enroll", json={"contacts": contacts, "groupByField": "account_id"},
                              catch_response=True) as resp:
            body = resp.json()
            if resp.status_code != 202 or body["accepted"] + len(body["rejected"]) != body["total"]:
                resp.failure(f"{resp.status_code}: {body.get('message')}")
