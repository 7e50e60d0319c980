import orjson
from rest_framework.renderers import JSONRenderer


class ORJSONRenderer(JSONRenderer):
    """orjson: several times faster than the standard library for list pages."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)


def _default(value):
    # Decimals (prices) arrive as strings from serializers; anything else left is a bug
    # worth surfacing as text rather than a 500 in the renderer.
    return str(value)
