"""Stand-ins for Razorpay's and PayMongo's APIs, on a local port, answering as those
APIs do: HTTP Basic authentication, their JSON shapes and error bodies, and on request
a 5xx, an HTML error page or no answer in time. `pay(link_id)` is the client paying on
the gateway's hosted page (the gateway's state changes; no webhook is sent)."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RAZORPAY_KEY = ("rzp_test_standin", "standin_secret")
PAYMONGO_KEY = "sk_test_standin"


@dataclass
class Standin:
    kind: str  # "razorpay" or "paymongo"
    url: str = ""
    # "" answers normally; "500", "html" (a 502 page from a proxy), "timeout" (sleeps).
    mode: str = ""
    sleep: float = 1.5
    requests: list[dict] = field(default_factory=list)
    links: dict[str, dict] = field(default_factory=dict)
    refunds: dict[str, dict] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def pay(self, link_id: str) -> str:
        link = self.links[link_id]
        payment_id = f"pay_standin{next(self.ids)}"
        if self.kind == "razorpay":
            link.update(status="paid", amount_paid=link["amount"])
            link["payments"] = [
                {"payment_id": payment_id, "amount": link["amount"], "status": "captured"}
            ]
        else:
            attributes = link["attributes"]
            attributes["status"] = "paid"
            attributes["payments"] = [
                {
                    "data": {
                        "id": payment_id,
                        "type": "payment",
                        "attributes": {
                            "amount": attributes["amount"],
                            "currency": "PHP",
                            "status": "paid",
                        },
                    }
                }
            ]
        return payment_id


def _handler(standin: Standin):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _answer(self, status: int, body: object, content_type: str = "application/json"):
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            auth = self.headers.get("Authorization", "")
            standin.requests.append(
                {"method": method, "path": self.path, "auth": auth, "body": body}
            )
            if standin.mode == "timeout":
                time.sleep(standin.sleep)
                return self._answer(200, {})
            if standin.mode == "html":
                return self._answer(502, "<html><h1>502 Bad Gateway</h1></html>", "text/html")
            if standin.kind == "razorpay":
                return self._razorpay(method, auth, body)
            return self._paymongo(method, auth, body)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        # --- Razorpay ------------------------------------------------------------------

        def _rzp_error(self, status: int, code: str, description: str) -> None:
            error = {"code": code, "description": description, "source": "NA", "step": "NA"}
            self._answer(status, {"error": {**error, "reason": "NA", "metadata": {}}})

        def _razorpay(self, method: str, auth: str, body) -> None:
            expected = "Basic " + base64.b64encode(":".join(RAZORPAY_KEY).encode()).decode()
            if auth != expected:
                return self._rzp_error(401, "BAD_REQUEST_ERROR", "Authentication failed")
            if standin.mode == "500":
                return self._rzp_error(500, "SERVER_ERROR", "The server encountered an error.")
            path = self.path.split("?")[0]
            if method == "POST" and path == "/v1/payment_links":
                if not isinstance(body, dict) or not isinstance(body.get("amount"), int):
                    return self._rzp_error(400, "BAD_REQUEST_ERROR", "The amount is required.")
                if body["amount"] < 100:
                    return self._rzp_error(
                        400, "BAD_REQUEST_ERROR", "The amount must be atleast INR 1.00"
                    )
                n = next(standin.ids)
                link = {
                    "id": f"plink_Standin{n}",
                    "entity": "payment_link",
                    "short_url": f"https://rzp.io/i/standin{n}",
                    "status": "created",
                    "amount": body["amount"],
                    "amount_paid": 0,
                    "currency": body.get("currency", "INR"),
                    "accept_partial": body.get("accept_partial", False),
                    "expire_by": body.get("expire_by", 0),
                    "reference_id": body.get("reference_id", ""),
                    "payments": None,
                }
                standin.links[link["id"]] = link
                return self._answer(200, link)
            if method == "GET" and path.startswith("/v1/payment_links/"):
                link = standin.links.get(path.rsplit("/", 1)[1])
                if link is None:
                    return self._rzp_error(
                        400, "BAD_REQUEST_ERROR", "The id provided does not exist"
                    )
                return self._answer(200, link)
            if method == "POST" and path.startswith("/v1/payments/") and path.endswith("/refund"):
                payment_id = path.split("/")[3]
                n = next(standin.ids)
                refund = {
                    "id": f"rfnd_standin{n}",
                    "entity": "refund",
                    "amount": (body or {}).get("amount"),
                    "currency": "PHP",
                    "payment_id": payment_id,
                    "status": "processed",
                }
                standin.refunds[refund["id"]] = refund
                return self._answer(200, refund)
            return self._rzp_error(400, "BAD_REQUEST_ERROR", "The requested URL was not found")

        # --- PayMongo ------------------------------------------------------------------

        def _pm_error(self, status: int, code: str, detail: str) -> None:
            self._answer(status, {"errors": [{"code": code, "detail": detail}]})

        def _paymongo(self, method: str, auth: str, body) -> None:
            expected = "Basic " + base64.b64encode(f"{PAYMONGO_KEY}:".encode()).decode()
            if auth != expected:
                return self._pm_error(401, "api_key_invalid", "API key is invalid.")
            if standin.mode == "500":
                return self._pm_error(500, "internal_server_error", "Something went wrong.")
            path = self.path.split("?")[0]
            if method == "POST" and path == "/v1/links":
                try:
                    attributes = body["data"]["attributes"]
                    amount = attributes["amount"]
                except (KeyError, TypeError):
                    return self._pm_error(400, "parameter_required", "data is required.")
                if not isinstance(amount, int) or amount < 10000:
                    return self._pm_error(
                        400,
                        "parameter_below_minimum",
                        "The value for amount cannot be less than 10000.",
                    )
                n = next(standin.ids)
                link = {
                    "id": f"link_Standin{n}",
                    "type": "link",
                    "attributes": {
                        "amount": amount,
                        "archived": False,
                        "currency": "PHP",
                        "description": attributes.get("description"),
                        "livemode": False,
                        "fee": 0,
                        "remarks": attributes.get("remarks"),
                        "status": "unpaid",
                        "tax_amount": None,
                        "taxes": [],
                        "checkout_url": f"https://pm.link/standin/test/Ref{n}",
                        "reference_number": f"Ref{n}",
                        "payments": [],
                    },
                }
                standin.links[link["id"]] = link
                return self._answer(200, {"data": link})
            if method == "GET" and path.startswith("/v1/links/"):
                link_id = path.rsplit("/", 1)[1]
                link = standin.links.get(link_id)
                if link is None:
                    return self._pm_error(
                        404, "resource_not_found", f"Link with id {link_id} cannot be found."
                    )
                return self._answer(200, {"data": link})
            if method == "POST" and path == "/v1/refunds":
                attributes = (body or {}).get("data", {}).get("attributes", {})
                n = next(standin.ids)
                refund = {
                    "id": f"ref_standin{n}",
                    "type": "refund",
                    "attributes": {**attributes, "currency": "PHP", "status": "pending"},
                }
                standin.refunds[refund["id"]] = refund
                return self._answer(200, {"data": refund})
            return self._pm_error(404, "route_not_found", "Route not found.")

    return Handler


@contextmanager
def running(kind: str) -> Iterator[Standin]:
    standin = Standin(kind=kind)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    server.daemon_threads = True
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
