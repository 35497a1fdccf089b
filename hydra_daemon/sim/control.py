"""HTTP fault control for a venue running as a subprocess: `POST /sim/faults` (form: name, value), `GET /sim/info`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hydra_daemon.sim.http_server import json_response
from hydra_daemon.sim.http_types import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from hydra_daemon.sim.venue import Venue


class FaultControl:
    """Route: `POST /sim/faults` name=<fault>&value=<arg> applies `Venue.apply_fault`; `GET /sim/info` -> venue info."""

    def __init__(self, venue: Venue) -> None:
        self.venue = venue

    def respond(self, request: HttpRequest) -> HttpResponse | None:
        if request.path == "/sim/info" and request.method == "GET":
            return json_response(200, self.venue.info.as_dict())
        if request.path != "/sim/faults":
            return None
        if request.method != "POST":
            return json_response(405, {"detail": "Use POST /sim/faults with form fields name and value."})
        name = request.form.get("name", "")
        try:
            self.venue.apply_fault(name, request.form.get("value", ""))
        except ValueError as exc:
            return json_response(422, {"detail": str(exc)})
        return json_response(200, {"applied": name})
