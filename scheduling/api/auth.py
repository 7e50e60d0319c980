from functools import cache

from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from config.postgresql.base import prepared_cursor
from scheduling.models import User
from scheduling.realtime.events import committed_head_sql


@cache
def _token_user_sql() -> tuple[str, list[str]]:
    """The statement that reads a token's user (and, last, the stream head), and the
    user fields it returns in order."""
    quote = connection.ops.quote_name
    users, tokens = quote(User._meta.db_table), quote(Token._meta.db_table)
    user_id, pk = quote(Token._meta.get_field("user").column), quote(User._meta.pk.column)
    key = quote(Token._meta.get_field("key").column)
    fields = list(User._meta.concrete_fields)
    columns = ", ".join(f"{users}.{quote(f.column)}" for f in fields)
    sql = (
        f"SELECT {columns}, ({committed_head_sql()}) AS stream_head "
        f"FROM {users} JOIN {tokens} ON {tokens}.{user_id} = {users}.{pk} "
        f"WHERE {tokens}.{key} = %s"
    )
    return sql, [f.attname for f in fields]


def token_user(key: str) -> tuple[User, int | None] | None:
    """The token's user and the stream head read in the same statement (None: no such
    token). The API's authentication and the websocket's `?token=` both read it here."""
    sql, names = _token_user_sql()
    if connection.vendor != "postgresql":
        # SQLite hands back dates as text, which raw() converts as the ORM does.
        user = next(iter(User.objects.raw(sql, [key])), None)
        return None if user is None else (user, user.stream_head)
    with prepared_cursor(connection) as cursor:
        cursor.execute(sql, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    # On PostgreSQL the ORM applies no converter to any of the user's columns, so the row
    # is the model's state as the ORM would load it (a test compares the two).
    return User.from_db(connection.alias, names, row[:-1]), row[-1]


class StrictTokenAuthentication(TokenAuthentication):
    """Tokens are 40 hex characters; anything else is refused before the database
    (PostgreSQL rejects some bytes, a NUL for one, with an error, not a miss).

    Every API request starts here, so the token's user is read with one hand-written
    statement: DRF's `Token.objects.select_related("user")` cost 0.6 ms of CPU to build
    and load, a raw() query 0.2 ms, this cursor read 0.1 ms. Same answers and messages
    as DRF's TokenAuthentication.

    The same statement reads the stream head (`events.committed_head`) into
    `request.auth.stream_head`: the appointment list's page cache must read it before
    the page, and as a statement of its own it was a tenth of a cached page's cost."""

    def authenticate_credentials(self, key):
        if not key.isascii() or not key.isalnum() or len(key) > 64:
            raise AuthenticationFailed(_("Invalid token."))
        found = token_user(key)
        if found is None:
            raise AuthenticationFailed(_("Invalid token."))
        user, head = found
        if not user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        # Positional fields: Model.__init__ with keywords cost a twentieth of a cached page.
        token = Token(key, user.pk, None)
        Token.user.field.set_cached_value(token, user)
        # Not a Token field: a per-request attribute, read back with getattr (pagecache.py).
        setattr(token, "stream_head", head or 0)  # noqa: B010
        return user, token
