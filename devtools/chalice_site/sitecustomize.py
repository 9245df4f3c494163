"""Loaded at start-up by every Python that ``make local`` runs (its PYTHONPATH names this folder).

``chalice local`` runs unchanged; its local gateway then answers a failing
authorizer 401 or 500, as API Gateway does (``devtools.local_authorizer``).
"""
from devtools.local_authorizer import install

install()
