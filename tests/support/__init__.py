"""What many test folders share, one implementation each.

- :mod:`support.clock`: the fake monotonic clock (call it for now; ``sleep`` advances it).
- :mod:`support.cli`: the CLI as a CI step runs it, to its end or streamed (:class:`CliJob`).
- :mod:`support.job_outputs`: reading what a login left behind (dotenv, JSON, key file).
- :mod:`support.github_fakes`: the GitHub runner's rules (file commands, workflow commands,
  masks) and a loopback REST API; :mod:`support.gitlab_fakes`: GitLab's MR notes API.
- :mod:`support.loopback_http`, :mod:`support.loopback_tls`: fake services on 127.0.0.1.
- :mod:`support.gfm`: comments read as GitHub renders them (cmark-gfm).
- :mod:`support.waits`: waiting, with a deadline, for what another thread or process does.

Tests import them as ``support.<module>``: ``tests/`` is on ``sys.path`` because pytest
inserts the folder of ``tests/conftest.py`` (rootdir-relative "prepend" imports).
"""
