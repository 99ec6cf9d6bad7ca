"""The page is served with a strict policy and no inline script or handlers."""

import re


def test_page_security_headers_and_nonce(client):
    r = client.get("/")
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    html = r.get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all(f'nonce="{nonce}"' in s and "src=" in s for s in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert not re.search(r"<script[^>]*>[^<]+</script>", html)  # no inline script body
    assert client.get("/").headers["Content-Security-Policy"] != csp  # a fresh nonce


def test_static_files_and_api_are_nosniff(client):
    r = client.get("/static/app.js")
    assert r.status_code == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "javascript" in r.headers["Content-Type"]
    r.close()
    assert client.get("/api/me").headers["X-Content-Type-Options"] == "nosniff"


def test_the_script_never_inserts_html():
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "chat" / "static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, sink
