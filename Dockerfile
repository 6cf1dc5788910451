# One image for web, worker and beat (docker-compose.yml runs it three ways).
FROM python:3.11-slim
# Production settings unless told otherwise: DEBUG off (then SECRET_KEY must be given).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHON=python DATA_DIR=/data \
    STATIC_ROOT=/app/staticfiles DEBUG=False
WORKDIR /app
# nginx for bin/proxy (the compose service `proxy`), from Debian's registry.
RUN apt-get update && apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=False SECRET_KEY=build-only DATA_DIR=/tmp/build python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["bin/web"]
