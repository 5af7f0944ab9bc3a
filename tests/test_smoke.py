"""The basic journey: sign in, see the dashboard, sign out."""

from __future__ import annotations


def test_sign_in_and_out(client, login):
    assert client.get("/").status_code == 302
    login("staff")
    page = client.get("/")
    assert page.status_code == 200
    assert "staff" in page.get_data(as_text=True)
