"""A local Cognito user pool on moto's server, driven with the real cognito-idp API.

The same calls work against real Cognito: create the pool and an app client
that allows USER_PASSWORD_AUTH, sign a user up, confirm them as an admin,
then ``initiate_auth`` for RS256 id and access tokens. moto serves the pool's
JWKS at ``<endpoint>/<pool id>/.well-known/jwks.json``; its tokens carry the
real Cognito issuer, so the app's ``iss`` check is unchanged locally.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.settings import issuer_url

DEFAULT_PASSWORD = "Passw0rd!local"


@dataclass(frozen=True)
class LocalPool:
    endpoint_url: str
    region: str
    pool_id: str
    client_id: str
    # moto takes any key; MiniStack (``make deploy-local``, IAM enforced) only its own ("test").
    access_key_id: str = "local"
    secret_access_key: str = "local"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint_url}/{self.pool_id}/.well-known/jwks.json"

    @property
    def issuer(self) -> str:
        return issuer_url(self.region, self.pool_id)


def client(endpoint_url: str, region: str = "us-east-1", access_key_id: str = "local",
           secret_access_key: str = "local") -> Any:
    import boto3

    return boto3.client("cognito-idp", endpoint_url=endpoint_url, region_name=region,
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)


def pool_client(pool: LocalPool) -> Any:
    return client(pool.endpoint_url, pool.region, pool.access_key_id, pool.secret_access_key)


def create_pool(endpoint_url: str, name: str = "ws-cognito-local", region: str = "us-east-1") -> LocalPool:
    """A user pool with an app client for the CLI flows (no client secret)."""
    idp = client(endpoint_url, region)
    pool_id = idp.create_user_pool(
        PoolName=name,
        AutoVerifiedAttributes=["email"],
        Schema=[{"Name": "email", "AttributeDataType": "String", "Required": False, "Mutable": True}],
    )["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=f"{name}-client",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    return LocalPool(endpoint_url=endpoint_url, region=region, pool_id=pool_id, client_id=client_id)


def ensure_group(pool: LocalPool, group: str, username: str) -> None:
    idp = pool_client(pool)
    try:
        idp.create_group(GroupName=group, UserPoolId=pool.pool_id)
    except idp.exceptions.GroupExistsException:
        pass
    idp.admin_add_user_to_group(UserPoolId=pool.pool_id, Username=username, GroupName=group)


def sign_up(pool: LocalPool, username: str, password: str = DEFAULT_PASSWORD,
            email: str | None = None) -> None:
    """Sign the user up and confirm them; a user that exists already is left as is."""
    idp = pool_client(pool)
    try:
        idp.sign_up(ClientId=pool.client_id, Username=username, Password=password,
                    UserAttributes=[{"Name": "email", "Value": email or f"{username}@example.com"}])
    except idp.exceptions.UsernameExistsException:
        return
    idp.admin_confirm_sign_up(UserPoolId=pool.pool_id, Username=username)


def sign_in(pool: LocalPool, username: str, password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    """``initiate_auth`` with USER_PASSWORD_AUTH: ``{"id_token": ..., "access_token": ...}``."""
    idp = pool_client(pool)
    result = idp.initiate_auth(ClientId=pool.client_id, AuthFlow="USER_PASSWORD_AUTH",
                               AuthParameters={"USERNAME": username, "PASSWORD": password})
    auth = result["AuthenticationResult"]
    return {"id_token": auth["IdToken"], "access_token": auth["AccessToken"]}


def tokens_for(pool: LocalPool, username: str, password: str = DEFAULT_PASSWORD) -> dict[str, str]:
    sign_up(pool, username, password)
    return sign_in(pool, username, password)
