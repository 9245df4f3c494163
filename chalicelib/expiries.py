"""The expiry index over connections: which tokens expire when, and what the sweep recorded.

Connection items carry their token's ``exp`` in the sparse, sharded
``byTokenExpiry`` index (``schema``); the sweep (``expiry``) reads it, a
``refresh`` moves it. Apart from ``connections``, which stores and removes the
items themselves.
"""
from __future__ import annotations

from .connections import ConnectionNotFound
from .items import connection_key, expiring_connection
from .records import ExpiringConnection
from .schema import (
    BY_TOKEN_EXPIRY_INDEX, EXPIRY_SHARD_ATTRIBUTE, TOKEN_EXP_ATTRIBUTE, WARNED_EXP_ATTRIBUTE, expiry_shard,
    expiry_shards,
)
from .table import Table
from .validation import check_id


class TokenExpiries:
    def __init__(self, table: Table) -> None:
        self.table = table

    def expiring_before(self, deadline: int) -> list[ExpiringConnection]:
        """Every connection whose token's ``exp`` is at or before ``deadline``: one Query per shard.

        The index is eventually consistent: a refresh written a moment ago may
        still show the old ``exp``; ``mark_warned`` and the sweep's re-check
        (``token_expiry``) read the item itself before acting.
        """
        found: list[ExpiringConnection] = []
        for shard in expiry_shards():
            found.extend(expiring_connection(item) for item in self.table.query(
                IndexName=BY_TOKEN_EXPIRY_INDEX,
                KeyConditionExpression="#shard = :shard AND #exp <= :deadline",
                ExpressionAttributeNames={"#shard": EXPIRY_SHARD_ATTRIBUTE, "#exp": TOKEN_EXP_ATTRIBUTE},
                ExpressionAttributeValues={":shard": {"S": shard}, ":deadline": {"N": str(int(deadline))}}))
        return found

    def token_expiry(self, connection_id: str) -> int | None:
        """The stored ``exp`` of the connection's token, read consistently; None if not stored."""
        check_id(connection_id, "connection_id")
        item = self.table.get(connection_key(connection_id), TOKEN_EXP_ATTRIBUTE)
        if item is None or TOKEN_EXP_ATTRIBUTE not in item:
            return None
        return int(item[TOKEN_EXP_ATTRIBUTE]["N"])

    def set_token_expiry(self, connection_id: str, token_exp: int, groups: tuple[str, ...] | None = None,
                         scopes: tuple[str, ...] = ()) -> None:
        """Store a refreshed token's ``exp`` (also in the stored claims) and, with ``groups``, its groups and
        scopes: the stored identity that channel rules are checked against from then on.

        The warning already given stays recorded with the ``exp`` it was for
        (``warnedExp``): the sweep warns again only about another ``exp``, so a
        refresh with the same token does not re-arm it. Conditioned on the
        connection item existing, so a refresh racing its ``$disconnect`` cannot
        recreate a half item. Raises ConnectionNotFound.
        """
        check_id(connection_id, "connection_id")
        update = "SET #exp = :exp, #shard = :shard, claims.#claim = :exp"
        names = {"#exp": TOKEN_EXP_ATTRIBUTE, "#shard": EXPIRY_SHARD_ATTRIBUTE, "#claim": "exp"}
        values = {":exp": {"N": str(int(token_exp))}, ":shard": {"S": expiry_shard(connection_id)}}
        if groups is not None:  # the same comma/space forms as the authorizer's context (identity.flat_claims)
            update += ", claims.#groups = :groups, claims.#scope = :scope"
            names.update({"#groups": "groups", "#scope": "scope"})
            values.update({":groups": {"S": ",".join(groups)}, ":scope": {"S": " ".join(scopes)}})
        if not self.table.write_if(
                "update_item", Key=connection_key(connection_id), UpdateExpression=update,
                ConditionExpression="attribute_exists(pk)", ExpressionAttributeNames=names,
                ExpressionAttributeValues=values):
            raise ConnectionNotFound(connection_id)

    def mark_warned(self, connection_id: str, token_exp: int) -> bool:
        """Record that the client was warned about ``token_exp``; False if it was already, or it changed.

        One conditional UpdateItem: the stored ``exp`` is still ``token_exp``
        (no refresh since the index was read) and no warning for it was
        recorded. Two sweeps running at once therefore warn once.
        """
        check_id(connection_id, "connection_id")
        return self.table.write_if(
            "update_item", Key=connection_key(connection_id),
            UpdateExpression="SET #warned = :exp",
            ConditionExpression="#exp = :exp AND (attribute_not_exists(#warned) OR #warned <> :exp)",
            ExpressionAttributeNames={"#exp": TOKEN_EXP_ATTRIBUTE, "#warned": WARNED_EXP_ATTRIBUTE},
            ExpressionAttributeValues={":exp": {"N": str(int(token_exp))}})


__all__ = ["TokenExpiries"]
