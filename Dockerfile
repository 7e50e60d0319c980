# One image for every process: web (default CMD), realtime, worker and beat differ only
# in their command (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

WORKDIR /app

RUN useradd --system --create-home --uid 10001 app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# The key and the gateway only satisfy production settings at build time; neither is used.
RUN SECRET_KEY=build-time-only-not-secret PAYMENT_GATEWAY=fake \
    python manage.py collectstatic --noinput

# prometheus_client's multi-process files (PROMETHEUS_MULTIPROC_DIR in docker-compose.yml):
# a volume mounted here starts owned by the app user.
RUN mkdir /metrics && chown app /metrics

USER app

EXPOSE 8000 8001

# No access log: the app writes one JSON line per request, naming the route, not the path
# and query (which can carry a phone number or a name).
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
