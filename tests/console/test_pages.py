"""The pages' answers to bad input and empty states, over real HTTP."""

from __future__ import annotations

from tests.conftest import Server
from tests.console.conftest import csrf_of, signed_in


def test_bad_source_input_says_what_is_allowed(console_server: Server) -> None:
    with signed_in(console_server) as client:
        token = csrf_of(client.get("/console/sources").text)
        bad_name = client.post("/console/sources", data={"name": "no spaces", "csrf_token": token})
        assert bad_name.status_code == 400 and "letters, digits" in bad_name.text
        taken = client.post("/console/sources", data={"name": "web", "csrf_token": token})
        assert taken.status_code == 409 and "exists already" in taken.text
        bad_limit = client.post(
            "/console/sources", data={"name": "p1", "rate_limit": "-3", "csrf_token": token}
        )
        assert bad_limit.status_code == 400 and "above 0" in bad_limit.text
        made = client.post("/console/sources", data={"name": "p1", "rate_limit": "12.5", "csrf_token": token})
        assert made.status_code == 200 and "12.5 events/s" in made.text
        unset = client.post("/console/sources/p1/rate-limit", data={"rate_limit": "", "csrf_token": token})
        assert unset.status_code == 200 and "Rate limit removed." in unset.text
        assert client.get("/console/sources/nope").status_code == 404
        unknown = client.post("/console/sources/nope/rotate", data={"csrf_token": token})
        assert unknown.status_code == 404 and "No source named" in unknown.text


def test_empty_states(console_server: Server) -> None:
    with signed_in(console_server) as client:
        destinations = client.get("/console/destinations")
        assert destinations.status_code == 200 and "trackyard destinations add" in destinations.text
        missing = client.get("/console/profiles", params={"ref": "email:nobody@example.com"})
        assert missing.status_code == 404 and "No person has the id" in missing.text
        assert client.get("/console/profiles").status_code == 200
