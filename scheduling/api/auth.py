from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


class StrictTokenAuthentication(TokenAuthentication):
    """Tokens are 40 hex characters; anything else is refused before the database
    (PostgreSQL rejects some bytes, a NUL for one, with an error, not a miss)."""

    def authenticate_credentials(self, key):
        if not key.isascii() or not key.isalnum() or len(key) > 64:
            raise AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(key)
