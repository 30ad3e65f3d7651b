"""`ci-shark proxy`: a loopback reverse proxy that puts the login's token on every request,
so that any HTTP client (curl, Terraform, a Node or Go program) uses a DPoP-bound token
unchanged, at the cost of a local hop.

- ``forms.py``: how it runs (in the foreground, around a command, or in the background
  for the later steps of a GitHub job) and how it stops.
- ``server.py``: who may use it (loopback, the capability, never an open proxy) and the
  log line of each request.
- ``forward.py``: one exchange with the upstream: the token, the proof, the nonce, bodies
  streamed both ways, redirects passed back.
- ``upstreams.py``: where a path goes, and a redirect back to the proxy.
- ``wire.py``: HTTP/1.1 with the clients: which headers cross, bodies in pieces.

The token is kept fresh by :mod:`ci_shark.token_auth`, as for `request` and
:func:`ci_shark.session`. docs/proxy.md is the user's guide.
"""
