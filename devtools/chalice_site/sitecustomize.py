"""Loaded at start-up by every Python that ``make local`` runs (its PYTHONPATH names this folder).

``chalice local`` runs unchanged; its local gateway then answers a failing
authorizer 401 or 500 and decodes path parameters, as API Gateway does
(``devtools.chalice_gateway``).
"""
from devtools.chalice_gateway import install

install()
