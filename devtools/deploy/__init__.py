"""Deployment per stage: ``python -m devtools.deploy {deploy,delete,package} --stage S``.

- ``deploy``: the stage's resources stack (table, user pool, client, domain,
  groups) -> outputs recorded into ``.chalice/config.json`` -> IAM policy file
  from known ARNs -> ``chalice deploy`` -> authorizer wiring and a new
  deployment of the stage.
- ``delete``: ``chalice delete`` then the resources stack.
- ``package``: ``chalice package --merge-template`` into ``dist/<stage>/``.

Dev tooling only; never shipped to Lambda.
"""
from __future__ import annotations
